"""Live sessions on a generator (sessions/, services/generator/session_servicer.py), tiny weights on CPU.

The offline job it is compared with: the sample clip of 57 frames (= 5 blocks with the Wan VAE), a
per-frame trajectory with one camera per source frame, adaptive frames off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import SUCCEEDED
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished
from inspatio_world.media.decode import read_images
from inspatio_world.sessions.feed import load_scene
from inspatio_world.sessions.jpeg import decode_jpeg
from inspatio_world.sessions.session import GenerationSession, SessionBlock, SessionEnded, SessionSettings, SetCameras
from inspatio_world.store.local import LocalStore

from tests.support.clips import write_sample_mp4
from tests.support.local_jobs import HEIGHT, WIDTH, run_job, weights  # noqa: F401 (fixtures)

FRAMES, BLOCKS, SEED = 57, 5, 7  # 57 frames = 15 latents = 5 blocks of 3


def job_cameras(n: int = FRAMES) -> np.ndarray:
    """w2c [n, 4, 4]: the camera turns right 0.3 degrees a frame while it moves right and forward."""
    out = np.empty((n, 4, 4))
    for i in range(n):
        angle = np.radians(0.3 * i)
        c2w = np.eye(4)
        c2w[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        c2w[:3, 3] = [0.004 * i, 0.0, 0.006 * i]
        out[i] = np.linalg.inv(c2w)
    return out


def trajectory_text(w2c: np.ndarray) -> str:
    return "\n".join(" ".join(repr(float(v)) for v in m.reshape(-1)) for m in w2c) + "\n"


@pytest.fixture(scope="module")
def offline(tmp_path_factory, weights):
    """The offline job: its store, manifest, stages and each block's lossless frames."""
    folder = tmp_path_factory.mktemp("offline")
    video = write_sample_mp4(folder, FRAMES, HEIGHT, WIDTH)
    store = LocalStore(folder / "store")
    stages = LocalStages(store, weights, device=torch.device("cpu"))
    manager = JobManager(store, stages, lease_seconds=2.0)
    try:
        options = JobOptions(trajectory_text=trajectory_text(job_cameras()), adaptive_frames=False, seed=SEED, autoencoder="wan_vae")
        manifest, events = run_job(manager, video, options)
    finally:
        manager.shutdown()
    assert manifest.state == SUCCEEDED, manifest.error
    blocks = [read_images(store.download(e.key, folder / f"block{e.index}.mkv")) for e in events if isinstance(e, BlockPublished)]
    assert len(blocks) == BLOCKS
    return store, manifest, stages, blocks


def _session(offline, tmp_path, **settings) -> GenerationSession:
    store, manifest, stages, _ = offline
    scene = load_scene(store, manifest.video.key, manifest.stages["depth"].keys["depth"], tmp_path, torch.device("cpu"))
    settings = {"prompt": manifest.caption, "seed": SEED, "max_blocks": BLOCKS, **settings}
    return GenerationSession(stages.generator, scene, SessionSettings(**settings), start=False)


def _events(session: GenerationSession) -> list:
    events = []
    while not events or not isinstance(events[-1], SessionEnded):
        event = session.next_event(timeout=120)
        assert event is not None, "no event in 120 s"
        events.append(event)
    return events


def test_a_session_given_a_jobs_cameras_makes_the_jobs_frames(offline, tmp_path):
    session = _session(offline, tmp_path)
    session.command(SetCameras(job_cameras()), sent_unix_ns=123)
    session.start()
    events = _events(session)
    blocks = [e for e in events if isinstance(e, SessionBlock)]
    assert events[-1] == SessionEnded("max_blocks", BLOCKS)
    assert [b.index for b in blocks] == list(range(BLOCKS)) and {b.generation for b in blocks} == {0}
    first = 0
    for block, expected in zip(blocks, offline[3], strict=True):
        assert block.first_frame == first and block.images.shape == expected.shape
        assert torch.equal(block.images, expected), f"block {block.index} differs from the job's"
        np.testing.assert_array_equal(block.cameras, job_cameras()[first : first + len(expected)])
        assert block.source_frames == list(range(first, first + len(expected)))
        assert block.command_sent_unix_ns == 123 and block.dropped_before == 0
        assert len(block.jpeg) == len(expected) and decode_jpeg(block.jpeg[0]).shape == tuple(expected.shape[1:])
        first += len(expected)
