"""Faults a deployment meets, on the real services (LocalStack on 127.0.0.1, SeaweedFS S3, tiny
weights): each stage service and the coordinator killed (SIGKILL) mid-job and restarted, the S3
server down for 30 s, the coordinator restarted twice in one job, and 20 jobs at once under 100
watchers. Every job must finish with complete, decodable outputs, a watch opened before the fault
must see it to its end without a repeated block, and the bucket must hold no object that no job
accounts for (no orphan, partial or temporary object). One stack serves every case: each fault
restarts what it broke."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import pytest

from inspatio_world.client import AsyncClient, Client, JobEvent, JobOptions
from inspatio_world.jobs import manifest as manifests
from inspatio_world.media.decode import read_frames
from inspatio_world.stack import LocalStack
from inspatio_world.stages.render_feed import block_prefix

from tests.support.clips import write_sample_mp4
from tests.support.seaweedfs import SeaweedFS
from tests.support.stacks import local_stack

BUCKET = "inspatio-faults-test"
HEIGHT, WIDTH = 64, 96
JOB_TIMEOUT_S = 300.0
OUTAGE_S = 30.0
BLOCKS = 10  # orbit_left with adaptive frames bounces 9 frames to 121: ten blocks, time to break things
VIDEO_NAMES = ("pred", "source", "render", "compare")


@pytest.fixture(scope="module")
def s3():
    # A server of its own: the outage case stops it, which must not touch other modules' buckets.
    with SeaweedFS() as server:
        yield server


@pytest.fixture(scope="module")
def stack(s3, tmp_path_factory, tiny_weights):
    s3.make_store(BUCKET).put_bytes("probe", b"x")  # creates the bucket
    s3.make_store(BUCKET).delete("probe")
    env = {"INSPATIO_S3_ACCESS_KEY": s3.access_key, "INSPATIO_S3_SECRET_KEY": s3.secret_key,
           "INSPATIO_JOB_LEASE_SECONDS": "2", "INSPATIO_DEVICE": "cpu"}  # fmt: skip
    store_url = f"s3://{BUCKET}?endpoint={s3.endpoint}&secure=0"
    with local_stack(store_url, tiny_weights.root, default_ports=False, log_dir=tmp_path_factory.mktemp("logs"), extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def store(s3):
    return s3.make_store(BUCKET)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A video per frame count: a new video misses every stage cache, so its caption and depth run."""
    folder, written = tmp_path_factory.mktemp("clips"), {}

    def clip(frames: int) -> Path:
        if frames not in written:
            (folder / str(frames)).mkdir()
            written[frames] = write_sample_mp4(folder / str(frames), frames, HEIGHT, WIDTH)
        return written[frames]

    return clip


class Watcher(threading.Thread):
    """A client's watch of one job, opened before the fault and kept until the job's end."""

    def __init__(self, address: str, job_id: str, use_async: bool = False) -> None:
        super().__init__(daemon=True)
        self.address, self.job_id, self.use_async = address, job_id, use_async
        self.events: list[JobEvent] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            if self.use_async:
                asyncio.run(self._watch_async())
            else:
                with Client(self.address, timeout=60) as client:
                    for event in client.watch(self.job_id, timeout=JOB_TIMEOUT_S):
                        self.events.append(event)
        except BaseException as exc:  # noqa: BLE001 - reported by finished()
            self.error = exc

    async def _watch_async(self) -> None:
        async with AsyncClient(self.address, timeout=60) as client:
            async for event in client.watch(self.job_id, timeout=JOB_TIMEOUT_S):
                self.events.append(event)

    def saw(self, kind: str, stage: str = "", blocks: int = 1) -> bool:
        if kind == "block":
            return sum(e.kind == "block" for e in self.events) >= blocks
        return any(e.kind == kind and (not stage or e.stage == stage) for e in self.events)

    def wait_for(self, kind: str, stage: str = "", blocks: int = 1) -> None:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not self.saw(kind, stage, blocks):
            assert self.is_alive(), f"the watch ended before a {kind} {stage} event: {self.error!r}, {self.kinds()}"
            assert time.monotonic() < deadline, f"no {kind} {stage} event within {JOB_TIMEOUT_S:.0f} s: {self.kinds()}"
            time.sleep(0.05)

    def finished(self):
        self.join(JOB_TIMEOUT_S)
        assert self.error is None, f"the watch failed: {self.error!r}"
        assert self.events and self.events[-1].kind == "finished", self.kinds()
        return self.events[-1].status

    def blocks(self) -> list[int]:
        return [e.block_index for e in self.events if e.kind == "block"]

    def kinds(self) -> list[str]:
        return [e.kind + (f":{e.stage}" if e.kind.startswith("stage") else f":{e.block_index}" if e.kind == "block" else "")
                for e in self.events]


class ProgressPoller(threading.Thread):
    """Reads the job's manifest from the store while the job runs: the progress anyone sees."""

    def __init__(self, store, job_id: str) -> None:
        super().__init__(daemon=True)
        self.store, self.job_id, self.blocks_done, self.stop = store, job_id, [], threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.blocks_done.append(manifests.load(self.store, self.job_id).blocks_done)
            except Exception:  # noqa: BLE001 - a read during a restart may fail; the next one counts
                pass


def submit(stack: LocalStack, video: Path, use_async: bool = False, **options) -> tuple[str, Watcher]:
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        job = client.submit(video, JobOptions.for_trajectory("orbit_left.txt", **options))
    return job.job_id, Watcher(stack.addresses["coordinator"], job.job_id, use_async)


def kill_and_restart(stack: LocalStack, service: str) -> float:
    """SIGKILL the service, start it again; returns the seconds until it served again."""
    stack.stop_service(service, signal.SIGKILL)
    started = time.monotonic()
    stack.restart_service(service)
    return time.monotonic() - started


def logged(stack: LocalStack, service: str, text: str) -> int:
    """How many lines of the service's log (every process it has had) contain `text`."""
    return sum(text in line for line in (stack.log_dir / f"{service}.log").read_text(errors="replace").splitlines())


def accounted_keys(store) -> set[str]:
    """Every object some job explains: its manifest, upload, stage outputs and generated blocks."""
    keys = set()
    for job in manifests.list_manifests(store):
        keys |= {job.key, job.video.key, *job.outputs.values()}
        for record in job.stages.values():
            keys |= set(record.keys.values())
        for folder in block_folders(job):
            keys |= {f"{folder}/block_{index:04d}.mkv" for index in range(job.blocks_total)}
    return keys


def block_folders(job) -> list[str]:
    """Where a job's blocks may sit: beside the video they make up (generated from a published render),
    or, where the generator rendered as it went (RenderAndGenerate), under the streamed render's prefix."""
    folders = [job.outputs["pred"].rsplit("/", 1)[0]] if "pred" in job.outputs else []
    if "render" in job.stages and "generator" in job.weights:
        folders.append(block_prefix(job.video.sha256, job.stages["render"].keys["schedule"], job.caption, job.options.seed,
                                    job.options.autoencoder, job.weights["generator"]))  # fmt: skip
    return folders


def check_job(store, status, watcher: Watcher, tmp_path: Path, blocks: int) -> None:
    """The job succeeded, its watch saw every block once in order, its videos decode whole, and the
    bucket holds nothing no job accounts for."""
    assert status.state == "succeeded", status.error
    assert status.blocks_done == status.blocks_total == blocks
    assert watcher.blocks() == list(range(blocks)), watcher.kinds()
    job = manifests.load(store, status.job_id)
    frames = None
    for name in VIDEO_NAMES:
        video = read_frames(store.download(job.outputs[name], tmp_path / f"{name}.mp4"))
        assert video.shape[0] > 0 and frames in (None, video.shape[0])
        frames = video.shape[0]
    # the blocks the watch was handed: each where the job's blocks sit, together the whole video
    chunks = [e.chunk_key for e in watcher.events if e.kind == "block"]
    assert all(key.rsplit("/", 1)[0] in block_folders(job) and store.exists(key) for key in chunks), chunks
    assert sum(read_frames(store.download(key, tmp_path / "block.mkv")).shape[0] for key in chunks) == frames
    present = {info.key for info in store.list()}
    assert not present - accounted_keys(store), "objects no job accounts for"
    assert not [key for key in present if ".part" in key or ".inspatio-" in key or "lease" in key]


@pytest.mark.parametrize("service, stage", [("caption", "caption"), ("depthrender", "depth")])
def test_a_stage_service_killed_mid_call_is_waited_for(stack, store, clips, tmp_path, service, stage):
    video = clips(10 if service == "caption" else 11)  # a new video: the stage really runs
    job_id, watcher = submit(stack, video, adaptive_frames=False)
    watcher.wait_for("stage_started", stage)
    kill_and_restart(stack, service)
    check_job(store, watcher.finished(), watcher, tmp_path, blocks=1)


def test_the_generator_killed_mid_stream_is_reopened_without_repeating_blocks(stack, store, clips, tmp_path):
    job_id, watcher = submit(stack, clips(9), seed=1)
    watcher.wait_for("block")
    assert not watcher.saw("finished") and len(watcher.blocks()) < BLOCKS
    reopened = logged(stack, "coordinator", "the generate stream broke")
    back_in = kill_and_restart(stack, "generator")
    status = watcher.finished()
    check_job(store, status, watcher, tmp_path, blocks=BLOCKS)
    assert logged(stack, "coordinator", "the generate stream broke") == reopened + 1  # mid-stream, reopened once
    assert [e.stage for e in watcher.events if e.kind == "stage_started"].count("generate") == 1  # one run, reopened
    print(f"generator back in {back_in:.1f} s")


@pytest.mark.parametrize("restarts", [1, 2])
def test_the_coordinator_killed_mid_job_hands_the_job_and_the_watch_over(stack, store, clips, tmp_path, restarts):
    # the sync SDK's watch follows one restart, the async SDK's two
    job_id, watcher = submit(stack, clips(9), use_async=restarts == 2, seed=10 + restarts)
    progress = ProgressPoller(store, job_id)
    for restart in range(restarts):
        watcher.wait_for("block", blocks=restart + 1)  # a new block each time: the job got further
        assert not watcher.saw("finished")
        kill_and_restart(stack, "coordinator")
    check_job(store, watcher.finished(), watcher, tmp_path, blocks=BLOCKS)
    progress.stop.set()
    progress.join()
    # the job ran again on the new coordinator, from block 0, yet its saved progress never went back
    assert progress.blocks_done == sorted(progress.blocks_done) and progress.blocks_done[-1] == BLOCKS
    started = [e.stage for e in watcher.events if e.kind == "stage_started"]
    assert started.count("generate") == restarts + 1, watcher.kinds()


def test_an_s3_outage_is_ridden_out_in_place(stack, store, s3, clips, tmp_path):
    job_id, watcher = submit(stack, clips(9), seed=20)
    watcher.wait_for("block")
    retries = {service: logged(stack, service, "; retry ") for service in ("coordinator", "generator")}
    s3.pause()
    time.sleep(OUTAGE_S)
    s3.resume()
    back = time.monotonic()
    status = watcher.finished()
    print(f"job finished {time.monotonic() - back:.1f} s after the store came back")
    check_job(store, status, watcher, tmp_path, blocks=BLOCKS)
    # ridden out by retries, not by another run of the job: every stage started exactly once
    started = [e.stage for e in watcher.events if e.kind == "stage_started"]
    assert sorted(started) == ["caption", "depth", "generate", "render"], watcher.kinds()
    assert all(logged(stack, service, "; retry ") > retries[service] for service in retries)  # they did wait for it


def test_twenty_jobs_at_once_under_a_hundred_watchers(stack, store, clips):
    video = clips(9)  # stages cached by the earlier cases: the jobs are quick, the watchers many
    options = JobOptions.for_trajectory("orbit_left.txt", seed=1)
    address = stack.addresses["coordinator"]

    async def watch(client: AsyncClient, job_id: str) -> list[JobEvent]:
        return [event async for event in client.watch(job_id, timeout=JOB_TIMEOUT_S)]

    async def main():
        clients = [AsyncClient(address, timeout=120) for _ in range(4)]
        try:
            jobs = await asyncio.gather(*(clients[0].submit(video, options) for _ in range(20)))
            watches = [watch(clients[i % 4], jobs[i % 20].job_id) for i in range(100)]
            return jobs, await asyncio.gather(*watches)
        finally:
            await asyncio.gather(*(client.close() for client in clients))

    started = time.monotonic()
    jobs, watches = asyncio.run(main())
    assert len({job.job_id for job in jobs}) == 20
    for events in watches:
        assert events[-1].kind == "finished" and events[-1].status.state == "succeeded", events[-1].status.error
        blocks = [e.block_index for e in events if e.kind == "block"]
        assert blocks == sorted(set(blocks))
    print(f"20 jobs, 100 watchers: {time.monotonic() - started:.1f} s")
    assert not {info.key for info in store.list()} - accounted_keys(store)
