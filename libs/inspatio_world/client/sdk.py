"""The InSpatio-World client SDK: submit a video and a camera path, follow the job, fetch the results.

    from inspatio_world.client import Client, JobOptions

    with Client("127.0.0.1:50051") as client:
        job = client.submit("street.mp4", JobOptions.for_trajectory("x_y_circle_cycle.txt"))
        final = client.wait(job.job_id, on_event=lambda e: print(e.kind, e.stage or e.block_index))
        client.download(final, "out/")        # pred.mp4, render.mp4, source.mp4, compare.mp4, manifest.json

While a job runs, each "block" event references that block's frames: `client.fetch_block(event, "blocks/")`.
`AsyncClient` offers the same calls for asyncio. Calls are retried on UNAVAILABLE (a coordinator
restarting) with backoff; every call takes a deadline (`timeout`, seconds). A watch (and `wait`)
reconnects for as long as its job goes on, without showing a block twice (see `Client.watch`). A
refused call raises its grpc.RpcError; `error_details(exc)` (rpc/rich_errors.py) reads the field to
change and the wait to take.

Security (rpc/channels.py): `token` (else INSPATIO_TOKEN, else the file INSPATIO_TOKEN_FILE) is sent
on every call as `authorization: Bearer ...`. `tls`: None follows the environment (INSPATIO_TLS_CA,
INSPATIO_TLS_CLIENT_CERT/_KEY, INSPATIO_TLS_SERVER_NAME) and otherwise the address: plaintext on
loopback, TLS elsewhere; True forces TLS, False plaintext, or give a `ClientTLS`.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import grpc

from ..jobs.options import JobOptions
from ..rpc.channels import ClientTLS, open_channel
from ..rpc.generated import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from ..rpc.tokens import client_token
from ..rpc.options_proto import options_from_proto, options_to_proto
from .reconnect import DEFAULT_RECONNECT_S, ReconnectBudget, SeenEvents, probe_failure

if TYPE_CHECKING:
    from .session import Session

CHUNK_BYTES = 1 << 20
# file names of a job's outputs in download(); any other output NAME (e.g. a render-only job's mask) is NAME.mp4
OUTPUT_FILES = {"pred": "pred.mp4", "render": "render.mp4", "source": "source.mp4", "compare": "compare.mp4", "manifest": "manifest.json"}
STATES = {v: k.removeprefix("JOB_STATE_").lower() for k, v in coordinator_pb2.JobState.items()}
T = TypeVar("T")


@dataclass(frozen=True)
class VideoRef:
    """The job's input video in the store."""

    key: str
    size: int  # bytes
    sha256: str


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str  # queued, running, succeeded, failed, cancelled
    caption: str
    blocks_done: int
    blocks_total: int
    error: str
    timings: dict[str, tuple[float, bool]]  # stage -> (seconds, cache hit)
    outputs: dict[str, common_pb2.ObjectRef] = field(default_factory=dict)  # name -> key and presigned url
    options: JobOptions | None = None
    video: VideoRef | None = None
    created_unix: float = 0.0
    updated_unix: float = 0.0
    images: tuple[str, ...] = ()  # an image job's pictures (keys), in view order

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    @classmethod
    def from_proto(cls, job: coordinator_pb2.Job) -> "JobStatus":
        outputs = {field.name: ref for field, ref in job.outputs.ListFields()}
        timings = {t.stage: (t.seconds, t.cache_hit) for t in job.timings}
        return cls(job.job_id, STATES[job.state], job.caption, job.blocks_done, job.blocks_total, job.error, timings, outputs,
                   options_from_proto(job.options), VideoRef(job.video.key, job.video.size, job.video.sha256),
                   job.created_unix, job.updated_unix, tuple(image.key for image in job.images))  # fmt: skip

    def to_dict(self) -> dict:
        """The status as plain JSON-ready values (what `inspatio get` prints)."""
        data = asdict(self)  # options and video are dataclasses: they become dicts
        data["timings"] = {stage: {"seconds": seconds, "cache_hit": hit} for stage, (seconds, hit) in self.timings.items()}
        data["outputs"] = {name: {"key": ref.key, "url": ref.url} for name, ref in self.outputs.items()}
        return data


@dataclass(frozen=True)
class JobEvent:
    kind: str  # stage_started, stage_finished, block, finished
    job_id: str
    stage: str = ""
    seconds: float = 0.0
    cache_hit: bool = False
    block_index: int = -1
    blocks: int = 0
    first_frame: int = 0  # for "block": the block's first frame in the output video
    frames: int = 0
    chunk_key: str = ""  # for "block": the store key of the block's frames (see fetch_block)
    chunk_url: str = ""  # and where to download them (presigned URL, or file:// for a local store)
    status: JobStatus | None = None  # for "finished"

    @classmethod
    def from_proto(cls, event: coordinator_pb2.JobEvent) -> "JobEvent":
        kind = event.WhichOneof("event")
        if kind == "stage_started":
            return cls(kind, event.job_id, stage=event.stage_started.stage)
        if kind == "stage_finished":
            timing = event.stage_finished.timing
            return cls(kind, event.job_id, stage=timing.stage, seconds=timing.seconds, cache_hit=timing.cache_hit)
        if kind == "block":
            block = event.block
            return cls(kind, event.job_id, stage="generate", seconds=block.seconds, block_index=block.index,
                       blocks=block.blocks, first_frame=block.first_frame, frames=block.frames,
                       chunk_key=block.chunk.key, chunk_url=block.chunk.url)  # fmt: skip
        return cls(kind, event.job_id, status=JobStatus.from_proto(event.finished))


def file_chunks(path: Path) -> Iterator[bytes]:
    """A local file's bytes in upload-sized chunks (SubmitJob's and OpenSession's uploads)."""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def video_source(video: str | Path, what: str = "video") -> str | Path:
    """An `s3://bucket/key` URI as it is (referenced in place), else the local file to upload
    (FileNotFoundError when there is none)."""
    if str(video).startswith("s3://"):
        return str(video)
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    return path


def _upload_messages(video: Path, options: JobOptions) -> Iterator[coordinator_pb2.SubmitJobRequest]:
    yield coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(options=options_to_proto(options), upload_name=video.name))
    for chunk in file_chunks(video):
        yield coordinator_pb2.SubmitJobRequest(chunk=chunk)


def submit_messages(video: str | Path, options: JobOptions) -> Iterator[coordinator_pb2.SubmitJobRequest]:
    """A local file is uploaded in chunks; an `s3://bucket/key` URI is referenced in place."""
    source = video_source(video)
    if isinstance(source, str):
        spec = coordinator_pb2.JobSpec(options=options_to_proto(options), video_uri=source)
        return iter([coordinator_pb2.SubmitJobRequest(spec=spec)])
    return _upload_messages(source, options)


def image_submit_messages(images: Sequence[str | Path], options: JobOptions,
                          geometry: str | Path | None = None) -> Iterator[coordinator_pb2.SubmitJobRequest]:  # fmt: skip
    """An image job (v1.5): 1 or 4 pictures, local files uploaded in chunks, `s3://bucket/key` URIs in place;
    `geometry`: the pictures' own depth, intrinsics and w2c (a safetensors file, geometry/supplied_geometry.py)."""
    sources = [video_source(image, "image") for image in images]  # every path checked before anything is sent
    supplied = video_source(geometry, "geometry") if geometry is not None else None
    inputs = coordinator_pb2.ImageInputs(images=[_image_source(source) for source in sources])
    if supplied is not None:
        inputs.geometry.CopyFrom(_image_source(supplied))
    yield coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(options=options_to_proto(options), images=inputs))
    for index, source in enumerate(sources):
        if isinstance(source, Path):
            for chunk in file_chunks(source):
                yield coordinator_pb2.SubmitJobRequest(image_chunk=coordinator_pb2.ImageChunk(index=index, data=chunk))
    if isinstance(supplied, Path):
        for chunk in file_chunks(supplied):
            yield coordinator_pb2.SubmitJobRequest(geometry_chunk=chunk)


def _image_source(source: str | Path) -> coordinator_pb2.ImageSource:
    return coordinator_pb2.ImageSource(image_uri=source) if isinstance(source, str) else coordinator_pb2.ImageSource(upload_name=source.name)


def _download(url: str, target: Path, what: str) -> Path:
    """One object from its URL (presigned http(s), or file:// for a local store) into target."""
    if not url:
        raise RuntimeError(f"{what} has no download URL; read it from the store directly")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url) as response, partial.open("wb") as handle:
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
    partial.replace(target)  # no half-written file under the final name
    return target


def download_outputs(status: JobStatus, out_dir: str | Path) -> dict[str, Path]:
    """Fetch a finished job's outputs through their presigned URLs into out_dir."""
    out_dir = Path(out_dir)
    return {name: _download(ref.url, out_dir / OUTPUT_FILES.get(name, f"{name}.mp4"), f"output {name} ({ref.key})")
            for name, ref in status.outputs.items()}  # fmt: skip


def fetch_block(event: JobEvent, path: str | Path) -> Path:
    """Fetch the frames of one "block" event while the job runs; returns the file written.

    The file is a lossless FFV1 video in Matroska (.mkv, RGB 8-bit) of exactly `event.frames` frames,
    output frames `event.first_frame` onwards: the exact 8-bit pixels that pred.mp4 then encodes (lossy H.264).
    Read it with `inspatio_world.media.decode.read_frames` (or any FFmpeg-based reader). `path` is
    a file, or an existing folder to write `block_NNNN.mkv` into.
    """
    if event.kind != "block":
        raise ValueError(f"a {event.kind!r} event has no frames; only \"block\" events do")
    target = Path(path)
    if target.is_dir():
        target = target / event.chunk_key.rsplit("/", 1)[-1]
    return _download(event.chunk_url, target, f"block {event.block_index} ({event.chunk_key})")


class Client:
    """Synchronous client of the coordinator."""

    def __init__(self, address: str = "127.0.0.1:50051", timeout: float = 60.0, attempts: int = 6, backoff: float = 0.5, *,
                 token: str | None = None, tls: ClientTLS | bool | None = None) -> None:  # fmt: skip
        self.address, self.tls = address, ClientTLS.resolve(tls)
        self.channel = open_channel(address, self.tls, client_token(token))  # the token lives in the channel only
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff

    def __repr__(self) -> str:
        return f"Client({self.address!r}, {self.tls.describe(self.address)})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _retry(self, call: Callable[[], T]) -> T:
        for attempt in range(self.attempts):
            try:
                return call()
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.attempts - 1:
                    raise
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def submit(self, video: str | Path, options: JobOptions, timeout: float | None = None) -> JobStatus:
        # an upload is a stream: it is retried from the start, so the file is re-read each attempt
        job = self._retry(lambda: self.stub.SubmitJob(submit_messages(video, options), timeout=timeout or self.timeout))
        return JobStatus.from_proto(job)

    def submit_images(self, images: Sequence[str | Path], options: JobOptions, timeout: float | None = None,
                      geometry: str | Path | None = None) -> JobStatus:  # fmt: skip
        """A v1.5 image job: 1 picture or 4 views (local files or s3:// URIs), options with model_version
        "v1_5", a prompt and a per-frame camera path; `geometry` replaces DA3 (see image_submit_messages)."""
        job = self._retry(lambda: self.stub.SubmitJob(image_submit_messages(images, options, geometry), timeout=timeout or self.timeout))
        return JobStatus.from_proto(job)

    def get(self, job_id: str) -> JobStatus:
        request = coordinator_pb2.GetJobRequest(job_id=job_id)
        return JobStatus.from_proto(self._retry(lambda: self.stub.GetJob(request, timeout=self.timeout)))

    def list(self, limit: int = 100) -> list[JobStatus]:
        request = coordinator_pb2.ListJobsRequest(limit=limit)
        return [JobStatus.from_proto(j) for j in self._retry(lambda: self.stub.ListJobs(request, timeout=self.timeout)).jobs]

    def cancel(self, job_id: str, wait: bool = False, timeout: float | None = None) -> JobStatus:
        """Ask the job to stop. The answer is its state then (a running job stops at its next step or
        block), unless `wait`: then the status once it has ended (normally "cancelled"), within timeout."""
        request = coordinator_pb2.CancelJobRequest(job_id=job_id)
        status = JobStatus.from_proto(self._retry(lambda: self.stub.CancelJob(request, timeout=self.timeout)))
        return self.wait(job_id, timeout=timeout) if wait and not status.finished else status

    def watch(self, job_id: str, timeout: float | None = None, reconnect_s: float = DEFAULT_RECONNECT_S) -> Iterator[JobEvent]:
        """Events until the job ends, "finished" last. A stream that drops (UNAVAILABLE: a coordinator
        restarting; or ended before the job, by a draining coordinator) is reopened with capped backoff
        for as long as the job exists: within `timeout` (seconds, for the whole watch) if given, else
        until the coordinator has been unreachable for `reconnect_s`. Any other status is raised
        (NOT_FOUND: no such job). See `reconnect.SeenEvents` for what repeats after a reconnection:
        never a block index (each is seen once, in increasing order); a stage event only when the job
        really ran the stage again (a coordinator that took the job over re-runs it, finished stages
        as cache hits)."""
        request = coordinator_pb2.WatchJobRequest(job_id=job_id)
        budget, seen = ReconnectBudget(timeout, reconnect_s, self.backoff), SeenEvents()
        while True:
            try:
                for message in self.stub.WatchJob(request, timeout=budget.stream_timeout()):
                    budget.heard_from_server()
                    event = JobEvent.from_proto(message)
                    if seen.admit(event):
                        yield event
                    if event.kind == "finished":
                        return
                error = None
            except grpc.RpcError as exc:
                error = exc
            self._wait_for_coordinator(job_id, budget, error)

    def _wait_for_coordinator(self, job_id: str, budget: ReconnectBudget, error: grpc.RpcError | None) -> None:
        """Back off until the coordinator answers for the job again; raises what ended the watch."""
        probe = coordinator_pb2.GetJobRequest(job_id=job_id)
        while (delay := budget.next_delay(error)) is not None:
            time.sleep(delay)
            try:
                self.stub.GetJob(probe, timeout=budget.probe_timeout())
            except grpc.RpcError as exc:
                error = probe_failure(exc)
                continue
            budget.heard_from_server()
            return
        if error is not None:
            raise error
        raise TimeoutError(f"watch of job {job_id}: no end of the job within the watch's time")

    def wait(self, job_id: str, on_event: Callable[[JobEvent], None] | None = None, timeout: float | None = None) -> JobStatus:
        for event in self.watch(job_id, timeout=timeout):
            if on_event is not None:
                on_event(event)
            if event.kind == "finished":
                return event.status
        return self.get(job_id)

    def download(self, status: JobStatus, out_dir: str | Path) -> dict[str, Path]:
        return download_outputs(status, out_dir)

    def fetch_block(self, event: JobEvent, path: str | Path) -> Path:
        return fetch_block(event, path)

    def session(self, video: str | Path | None = None, *, video_uri: str | None = None, prompt: str | None = None,
                seed: int = 0, autoencoder: str = "taehv", time_policy: str = "bounce", backpressure: str = "latest",
                jpeg_quality: int = 85, timeout: float | None = None) -> "Session":  # fmt: skip
        """A live session over `video` (a local file, uploaded; or an s3:// URI) or `video_uri`: use it
        with `with` (client/session.py). `timeout`: the whole session's deadline (None: none)."""
        from .session import Session, start_messages

        opening = start_messages(video, video_uri=video_uri, prompt=prompt, seed=seed, autoencoder=autoencoder,
                                 time_policy=time_policy, backpressure=backpressure, jpeg_quality=jpeg_quality)  # fmt: skip
        return Session(self.channel, opening, timeout, self.attempts, self.backoff)
