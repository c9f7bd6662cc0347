"""Fixtures for whole jobs run in one process: tiny weights, a 9-frame clip, a job manager over a
local store, and running one job to its end."""

from __future__ import annotations

import pytest

from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import Manifest
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import JobFinished
from inspatio_world.store.local import LocalStore

from tests.support.clips import write_sample_mp4

FRAMES, HEIGHT, WIDTH = 9, 64, 96  # 9 frames = one block of 3 latents


@pytest.fixture(scope="module")
def weights(tiny_weights):
    return tiny_weights  # written once per run (tests/conftest.py)


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, HEIGHT, WIDTH)


@pytest.fixture
def manager(tmp_path, weights):
    store = LocalStore(tmp_path / "store")
    manager = JobManager(store, LocalStages(store, weights), lease_seconds=2.0)
    yield manager
    manager.shutdown()


def run_job(manager: JobManager, video_file, options: JobOptions) -> tuple[Manifest, list]:
    """Upload the clip, run one job to its end; its final manifest and every event."""
    video = manager.upload_video([video_file.read_bytes()], "clip.mp4")
    job = manager.submit(options, video)
    events = list(manager.watch(job.job_id))
    assert isinstance(events[-1], JobFinished)
    return events[-1].manifest, events


class StagesWithHook:
    """LocalStages whose generate (and render_and_generate) calls `hook(event)` on each event before
    passing it on: a test's way to cancel a job right after a block, or to fail the generate stage."""

    def __init__(self, inner: LocalStages, hook) -> None:
        self.inner, self.hook = inner, hook

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def generate(self, *args, **kwargs):
        return self._hooked(self.inner.generate(*args, **kwargs))

    def render_and_generate(self, *args, **kwargs):
        return self._hooked(self.inner.render_and_generate(*args, **kwargs))

    def _hooked(self, events):
        try:
            for event in events:
                self.hook(event)
                yield event
        finally:
            events.close()
