"""Accepting, running, watching, cancelling and resuming jobs: the coordinator's logic, shared by the
gRPC coordinator and the single-machine CLI.

Jobs run on a small thread pool. Progress events fan out to every watcher (with a replay of the
job's earlier events, so a late watcher misses nothing). A running job holds a lease object
(`jobs/<id>/lease.json`) that it renews; on start-up, and from time to time, a manager resumes any
unfinished job whose lease has expired, which is how a job survives its coordinator's death.

Tenants (jobs/tenants.py): every call about jobs or uploads acts for one tenant (ANONYMOUS in open
mode), whose objects live under its own prefix (store/keys.py). A job is looked up under its
tenant's prefix only, so another tenant's job id is "no job" exactly like an id nobody used. The
tenant's limits apply here: concurrent unfinished jobs and upload bytes (QuotaExceeded).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import socket
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .admission import probe_as
from ..refusals import FieldError, QuotaExceeded, VersionNotServed
from .budgets import StageBudgets
from ..store.base import ObjectNotFound, ObjectStore
from ..store.keys import UPLOAD_FIELD, job_prefix, upload_filename, upload_key, validate_job_id, validate_key
from . import manifest as manifests
from .manifest import CANCELLED, TERMINAL, Manifest, VideoRef
from .options import JobOptions
from .runner import JobEvent, JobFinished, JobRunner, StageClient
from .tenants import ANONYMOUS, Tenant

DEFAULT_LEASE_SECONDS = 30.0
MAX_UPLOAD_BYTES = 4 << 30
# A tenant at its limit of concurrent jobs waits for one of them to end: jobs take minutes, so an
# earlier retry would most likely be refused again.
BUSY_RETRY_SECONDS = 60.0
DEFAULT_LIST_LIMIT = 100  # ListJobs with limit 0 (unset)
MAX_LIST_LIMIT = 1000  # a larger limit is cut to this; a negative one is refused
_WATCH_CANCELLED = object()  # put in a watcher's queue to end its watch
# (the received video, its name as the client knows it) -> admission.Planned or a VideoInfo; ValueError refuses
Admit = Callable[[Path, str], object]


def _frames(admitted: object) -> int:
    """The video's frames from what `admit` returned: admission's plan (decoded frames) or probe_as's VideoInfo."""
    frames = getattr(admitted, "video_frames", None) or getattr(admitted, "frames", 0)
    return frames if isinstance(frames, int) else 0


def lease_key(job_id: str, tenant: str | None = None) -> str:
    return f"{job_prefix(job_id, tenant)}lease.json"


class JobManager:
    def __init__(self, store: ObjectStore, stages: StageClient, max_parallel_jobs: int = 2,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, budgets: StageBudgets | None = None) -> None:  # fmt: skip
        """`budgets`: the stage calls' time budgets (default: from the environment, jobs/budgets.py)."""
        self.store = store
        self.runner = JobRunner(store, stages, self._emit, budgets)
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_seconds = lease_seconds
        self._pool = ThreadPoolExecutor(max_workers=max_parallel_jobs, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}  # jobs running here
        self._lease_keys: dict[str, str] = {}  # job id -> its lease's key, for jobs running here
        self._submit_lock = threading.Lock()  # a tenant's job count and its new job, one submit at a time
        self._history: dict[str, list[JobEvent]] = {}
        self._watchers: dict[str, list[queue.Queue]] = {}
        self._lease_lock = threading.Lock()  # a finished job's lease is never renewed after release
        self._stopping = threading.Event()
        self._lease_thread = threading.Thread(target=self._renew_leases, name="job-leases", daemon=True)
        self._lease_thread.start()

    # -- videos -------------------------------------------------------------------------------

    def upload_video(self, chunks: Iterable[bytes], filename: str, admit: Admit | None = None,
                     tenant: Tenant = ANONYMOUS) -> VideoRef:  # fmt: skip
        """Receive a video, check that it decodes, then store it under its content hash, in the
        tenant's uploads. The name is checked (keys.upload_filename: InvalidKey) before a byte is
        read, reading stops at the tenant's max_upload_bytes (QuotaExceeded), and nothing reaches the
        store unless the whole upload arrived, decodes and passes `admit(path, name)` (the job's
        admission checks, jobs/admission.py; it raises ValueError to refuse)."""
        name = upload_filename(filename)
        with tempfile.TemporaryDirectory(prefix="inspatio-upload-") as folder:
            path = Path(folder) / name
            digest, size = hashlib.sha256(), 0
            with path.open("wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if tenant.max_upload_bytes is not None and size > tenant.max_upload_bytes:
                        raise QuotaExceeded(tenant.subject, f"upload larger than this tenant's max_upload_bytes "
                                                            f"({tenant.max_upload_bytes} bytes)")
                    if size > MAX_UPLOAD_BYTES:
                        raise FieldError(UPLOAD_FIELD, f"upload larger than {MAX_UPLOAD_BYTES >> 20} MiB")
                    digest.update(chunk)
                    handle.write(chunk)
            if size == 0:
                raise FieldError(UPLOAD_FIELD, f"{filename}: the upload is empty")
            # VideoError (a ValueError) for anything that is not a decodable video
            admitted = (admit or partial(probe_as, field=UPLOAD_FIELD))(path, name)
            sha = digest.hexdigest()
            key = upload_key(sha, path.name, tenant.name)
            if not self.store.exists(key):
                self.store.put_file(key, path, content_type="video/mp4")
        return VideoRef(key, sha, size, _frames(admitted))

    def video_from_store(self, key: str, admit: Admit | None = None, tenant: Tenant = ANONYMOUS) -> VideoRef:
        """A video already in the store (e.g. s3://bucket/key); checked like an upload (`admit` included).
        The key is checked (InvalidKey) and the tenant's right to read it (PermissionDenied) before
        the store is asked anything: a refusal says nothing about what exists."""
        validate_key(key, "video_uri")  # InvalidKey (INVALID_ARGUMENT) names the field
        tenant.check_readable(self.store.bucket, key)
        info = self.store.stat(key)
        if info is None:
            raise ObjectNotFound(f"video {key!r} not found in bucket {self.store.bucket}")
        with tempfile.TemporaryDirectory(prefix="inspatio-probe-") as folder:
            path = self.store.download(key, Path(folder) / Path(key).name)
            admitted = (admit or partial(probe_as, field="video_uri"))(path, key)
            sha = info.sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
        return VideoRef(key, sha, info.size, _frames(admitted))

    def add_images(self, images: Sequence[tuple[str, bytes | None]], tenant: Tenant = ANONYMOUS) -> tuple[VideoRef, ...]:
        """An image job's pictures, each (upload_name, its bytes) or (key of an object in the store, None):
        see `add_image_inputs`."""
        return self.add_image_inputs(images, None, tenant)[0]

    def add_image_inputs(self, images: Sequence[tuple[str, bytes | None]], geometry: tuple[str, bytes | None] | None,
                         tenant: Tenant = ANONYMOUS) -> tuple[tuple[VideoRef, ...], VideoRef | None]:  # fmt: skip
        """An image job's pictures and, optionally, its own geometry object, each (upload_name, its bytes)
        or (key of an object in the store, None). Names, keys and read rights are checked, then all the
        pictures together (media/image_inputs: count 1 or 4, PNG/JPEG/WebP, sizes) and the geometry
        against them (media/image_geometry), ImageInputError naming the input, and only then are the
        uploads stored, under their content hash in the tenant's uploads. Objects are used where they are."""
        from ..media.image_geometry import check_geometry
        from ..media.image_inputs import check_image_inputs

        inputs = [self._input(name, data, f"images[{index}]", tenant) for index, (name, data) in enumerate(images)]
        supplied = self._input(*geometry, "geometry", tenant) if geometry is not None else None
        check_image_inputs([data for _, data, _ in inputs])
        if supplied is not None:
            check_geometry(supplied[1], len(inputs))
        refs = tuple(self._stored(*item, tenant) for item in inputs)
        return refs, (self._stored(*supplied, tenant) if supplied is not None else None)

    def _input(self, name: str, data: bytes | None, field: str, tenant: Tenant) -> tuple[str, bytes, bool]:
        """(key or upload name, bytes, whether it is an upload), the key and the tenant's right checked first."""
        if data is not None:
            return upload_filename(name), data, True
        validate_key(name, field)
        tenant.check_readable(self.store.bucket, name)
        if self.store.stat(name) is None:
            raise ObjectNotFound(f"{field} {name!r} not found in bucket {self.store.bucket}")
        return name, self.store.get_bytes(name), False

    def _stored(self, name: str, data: bytes, upload: bool, tenant: Tenant) -> VideoRef:
        digest = hashlib.sha256(data).hexdigest()
        key = upload_key(digest, name, tenant.name) if upload else name
        if upload and not self.store.exists(key):
            self.store.put_bytes(key, data, content_type="application/octet-stream")
        return VideoRef(key, digest, len(data))

    # -- jobs ---------------------------------------------------------------------------------

    def submit(self, options: JobOptions, video: VideoRef | None, tenant: Tenant = ANONYMOUS,
               images: tuple[VideoRef, ...] = (), geometry: VideoRef | None = None) -> Manifest:  # fmt: skip
        """Start a job on `video`, or (v1.5) on `images` (from `add_images`; `video` None) with, optionally,
        their own `geometry` (from `add_geometry`)."""
        if (video is None) == (not images):
            raise FieldError("video", "give a video or images (1 or 4), not both")
        if geometry is not None and not images:
            raise FieldError("images.geometry", "a geometry object goes with images, not with a video")
        options.validate()
        if images:
            options.validate_for_images(len(images))
        self.check_version(options)
        with self._submit_lock:  # one coordinator never lets a tenant past its limit; several may, briefly
            self.check_capacity(tenant)
            job = manifests.save(self.store, Manifest.new(options, video or VideoRef("", ""), tenant.name, images, geometry))
        self._start(job)
        return job

    @property
    def model_versions(self) -> tuple[str, ...]:
        """The model versions whose jobs this manager's stages can run (a stage client without the
        attribute runs v1 only)."""
        return tuple(getattr(self.runner.stages, "model_versions", ("v1",)))

    def check_version(self, options: JobOptions) -> None:
        """VersionNotServed (FAILED_PRECONDITION) when no generator here serves the job's model version
        (the coordinator also calls it before receiving an upload)."""
        if options.model_version not in self.model_versions:
            served = ", ".join(self.model_versions) or "none"
            raise VersionNotServed(f"model_version {options.model_version}: no generator of this deployment serves it "
                                   f"(served: {served}); submit with another model_version, or deploy a generator with "
                                   f"INSPATIO_MODEL_VERSION={options.model_version}")  # fmt: skip

    def check_capacity(self, tenant: Tenant) -> None:
        """QuotaExceeded when the tenant already has max_concurrent_jobs unfinished jobs (the
        coordinator also calls it before receiving an upload, to refuse cheaply)."""
        if tenant.max_concurrent_jobs is None:
            return
        unfinished = sum(job.state not in TERMINAL for job in manifests.list_manifests(self.store, tenant.name))
        if unfinished >= tenant.max_concurrent_jobs:
            raise QuotaExceeded(tenant.subject, f"this tenant has {unfinished} unfinished jobs and its "
                                                f"max_concurrent_jobs is {tenant.max_concurrent_jobs}: retry when one has ended",
                                retry_after_s=BUSY_RETRY_SECONDS)  # fmt: skip

    def get(self, job_id: str, tenant: Tenant = ANONYMOUS) -> Manifest:
        """The tenant's job `job_id`; ObjectNotFound alike for an id nobody used and another tenant's."""
        return self._load(job_id, tenant.name)

    def list(self, limit: int = DEFAULT_LIST_LIMIT, tenant: Tenant = ANONYMOUS) -> list[Manifest]:
        """The tenant's newest `limit` jobs: 0 means DEFAULT_LIST_LIMIT, more than MAX_LIST_LIMIT is
        cut to it, a negative limit is a ValueError."""
        if limit < 0:
            raise FieldError("limit", f"limit must be 0 (the default, {DEFAULT_LIST_LIMIT}) or positive, got {limit}")
        limit = min(limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        jobs = sorted(manifests.list_manifests(self.store, tenant.name), key=lambda m: m.created, reverse=True)
        return jobs[:limit]

    def cancel(self, job_id: str, tenant: Tenant = ANONYMOUS) -> Manifest:
        job = self.get(job_id, tenant)  # checks the id first
        if job.state in TERMINAL:
            return job
        with self._lock:
            cancel = self._cancels.get(job_id)
        if cancel is not None:
            cancel.set()  # the runner stops between steps and blocks, then saves CANCELLED
            return job
        # queued or running elsewhere: mark it; whoever resumes it finds it cancelled
        return manifests.save(self.store, job.with_(state=CANCELLED))

    def watch(self, job_id: str, poll_seconds: float = 1.0,
              on_cancel: Callable[[Callable[[], None]], None] | None = None,
              tenant: Tenant = ANONYMOUS) -> Iterator[JobEvent]:  # fmt: skip
        """This job's events until it ends. For a job running on another coordinator, only its end.

        `on_cancel` receives a function that ends the watch early (the coordinator passes it to the
        RPC's termination callback, so a watcher that went away, or a drained server, frees its thread
        at once instead of when the job ends)."""
        job = self.get(job_id, tenant)
        if job.state in TERMINAL:
            yield JobFinished(job)
            return
        events: queue.Queue = queue.Queue()
        with self._lock:
            backlog = list(self._history.get(job_id, []))
            self._watchers.setdefault(job_id, []).append(events)
        try:
            if on_cancel is not None:
                on_cancel(lambda: events.put(_WATCH_CANCELLED))
            yield from backlog
            if any(isinstance(e, JobFinished) for e in backlog):
                return
            while True:
                try:
                    event = events.get(timeout=poll_seconds)
                except queue.Empty:
                    if self._runs_here(job_id):
                        continue  # its end comes through the queue: no need to read the store
                    job = self.get(job_id, tenant)
                    if job.state in TERMINAL:
                        yield JobFinished(job)
                        return
                    continue
                if event is _WATCH_CANCELLED:
                    return
                yield event
                if isinstance(event, JobFinished):
                    return
        finally:
            with self._lock:
                self._watchers.get(job_id, []).remove(events)

    def resume_unfinished(self) -> list[str]:
        """Start every unfinished job (of every tenant) whose lease expired (its coordinator died);
        returns their ids."""
        resumed = []
        for job in manifests.all_manifests(self.store):
            if job.state not in TERMINAL and not self._leased(job) and job.job_id not in self._cancels:
                self._start(job)
                resumed.append(job.job_id)
        return resumed

    def shutdown(self, wait: bool = True) -> None:
        self._stopping.set()
        with self._lock:
            for cancel in self._cancels.values():
                cancel.set()
        self._pool.shutdown(wait=wait)

    # -- internals ----------------------------------------------------------------------------

    def _load(self, job_id: str, tenant: str | None) -> Manifest:
        validate_job_id(job_id, "job_id")  # InvalidKey (INVALID_ARGUMENT) before the store is asked anything
        try:
            return manifests.load(self.store, job_id, tenant)
        except ObjectNotFound:
            raise ObjectNotFound(f"no job {job_id!r}") from None

    def _start(self, job: Manifest) -> None:
        cancel = threading.Event()
        with self._lock:
            self._cancels[job.job_id] = cancel
            self._lease_keys[job.job_id] = lease_key(job.job_id, job.tenant)
            self._history[job.job_id] = []
        self._write_lease(job.job_id)
        self._pool.submit(self._run, job, cancel)

    def _run(self, job: Manifest, cancel: threading.Event) -> None:
        try:
            latest = self._load(job.job_id, job.tenant)  # it may have been cancelled while queued
            if latest.state == CANCELLED:
                self._emit(job.job_id, JobFinished(latest))
                return
            self.runner.run(latest, cancel)
        finally:
            self._release(job.job_id)

    def _runs_here(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancels

    def _release(self, job_id: str) -> None:
        """The job no longer runs here: forget it and drop its lease (idempotent)."""
        with self._lease_lock:
            with self._lock:
                running = self._cancels.pop(job_id, None) is not None
                key = self._lease_keys.pop(job_id, None)
            if running and key is not None:
                self.store.delete(key)

    def _emit(self, job_id: str, event: JobEvent) -> None:
        if isinstance(event, JobFinished):
            self._release(job_id)  # before anyone hears of the end, so the state they see is final
        with self._lock:
            self._history.setdefault(job_id, []).append(event)
            watchers = list(self._watchers.get(job_id, []))
        for watcher in watchers:
            watcher.put(event)

    def _write_lease(self, job_id: str) -> None:
        with self._lock:
            key = self._lease_keys.get(job_id)
        if key is None:
            return  # released meanwhile
        lease = {"owner": self.owner, "expires": time.time() + self.lease_seconds}
        self.store.put_bytes(key, json.dumps(lease).encode(), content_type="application/json")

    def _leased(self, job: Manifest) -> bool:
        try:
            lease = json.loads(self.store.get_bytes(lease_key(job.job_id, job.tenant)))
        except ObjectNotFound:
            return False
        return lease["expires"] > time.time()

    def _renew_leases(self) -> None:
        while not self._stopping.wait(self.lease_seconds / 3):
            with self._lease_lock:
                with self._lock:
                    running = list(self._cancels)
                for job_id in running:
                    try:
                        self._write_lease(job_id)
                    except Exception:  # a store hiccup: the next renewal tries again
                        pass
