"""SessionService.OpenSession: a live session, relayed between the client and one generator replica.

The client's first message is `start`. The video is resolved exactly as SubmitJob resolves it (same
tenant, same checks, before any stage runs): an upload follows as `chunk` parts ended by
`upload_done` and is stored under the tenant's uploads; a `video_uri` must be one the tenant may read.
Caption (unless `prompt`) and depth then come from the job manager's stage client, the same calls and
content keys as jobs (a cache hit for a video a job already saw); each sends a `stage` event with its
timing as it finishes. Then the coordinator opens GeneratorSessionService.RunSession with `setup` and
relays: the client's commands to the generator as they arrive, the generator's events to the client.
The coordinator holds nothing heavy: the session's state lives on the replica.

Each tenant holds at most its limit of sessions open at once (jobs/session_quota.py): one more is
refused with RESOURCE_EXHAUSTED and RetryInfo before the upload; the place is free again however the
session ends (closed, idle, max_blocks, shutting_down, an error, the client leaving).

Ends: the client going away (or its deadline) cancels the generator stream; the generator ending
ends the client's stream with the generator's status, rich details (RetryInfo of a full replica)
included. A message out of place (a second `start`, a chunk after the upload, a camera that is not 16
finite numbers of an invertible matrix) ends the session with INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Iterator

import grpc
from grpc_status import rpc_status

from inspatio_world.jobs.admission import Limits, admit_video
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import VideoRef
from inspatio_world.jobs.remote_stages import StageCallFailed
from inspatio_world.jobs.session_quota import TenantSessions
from inspatio_world.jobs.tenants import Tenant, Tenants
from inspatio_world.media.dataset_inputs import SOURCE_MAX_FRAMES
from inspatio_world.refusals import FieldError, fields_under
from inspatio_world.rpc.convert import timing_to_proto
from inspatio_world.rpc.generated import common_pb2, session_pb2, session_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics

from .servicer import _whole_upload, call_tenant, key_from_uri, tenant_limits

log = logging.getLogger(__name__)
NO_DEADLINE_SECONDS = 1e9  # gRPC's "no deadline" is ~9.2e18 s remaining
AUTOENCODERS = {common_pb2.AUTOENCODER_UNSPECIFIED, common_pb2.AUTOENCODER_WAN_VAE, common_pb2.AUTOENCODER_TAEHV}


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, manager: JobManager, tenants: Tenants = Tenants(), metrics: ServiceMetrics | None = None,
                 quota: TenantSessions | None = None) -> None:  # fmt: skip
        """`manager`: its store and stage client (`manager.runner.stages`, which must offer
        `open_session`) serve the sessions; `tenants` as CoordinatorServicer's; `metrics`: the server's
        (inspatio_sessions_active), or None; `quota`: each tenant's open sessions (None: a new one with
        INSPATIO_TENANT_MAX_SESSIONS as the default limit)."""
        self.manager, self.store, self.tenants, self.metrics = manager, manager.store, tenants, metrics
        self.quota = quota if quota is not None else TenantSessions()

    @property
    def stages(self):
        return self.manager.runner.stages

    def OpenSession(self, request_iterator, context) -> Iterator[session_pb2.SessionEvent]:
        tenant = call_tenant(self.tenants)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "start":
            raise FieldError("start", "the first OpenSession message must be `start` (SessionStart), "
                                      f"got {first.WhichOneof('part') if first is not None else 'none'}")  # fmt: skip
        start = first.start
        _check_start(start)
        release = self.quota.acquire(tenant)  # before the upload: a tenant at its limit is refused cheaply
        _on_termination(context, release)  # however the call ends (cancelled too), its place is free again
        stopped = threading.Event()  # the client went away: stage calls stop, the generator stream ends
        _on_termination(context, stopped.set)
        active = self.metrics.sessions_active() if self.metrics is not None else None
        if active is not None:
            active.inc()
        try:
            with fields_under("start"):
                video = self._video(start, request_iterator, tenant, context)
            prompt, depth_key = yield from self._conditioning(video, start, stopped, context)
            setup = session_pb2.GeneratorSessionSetup(
                video=common_pb2.ObjectRef(bucket=self.store.bucket, key=video.key, sha256=video.sha256),
                depth=common_pb2.ObjectRef(bucket=self.store.bucket, key=depth_key), prompt=prompt, seed=start.seed,
                autoencoder=start.autoencoder, time_policy=start.time_policy, backpressure=start.backpressure,
                jpeg_quality=start.jpeg_quality or 85,
            )  # fmt: skip
            yield from self._relay(setup, request_iterator, context, stopped)
        finally:
            release()
            if active is not None:
                active.dec()

    # -- the video: as SubmitJob ------------------------------------------------------------------

    def _video(self, start: session_pb2.SessionStart, request_iterator, tenant: Tenant, context) -> VideoRef:
        limits = tenant_limits(Limits.from_env(), tenant)
        source = start.WhichOneof("video")

        def admission(path, name):
            frames = admit_video(path, limits, name, source)
            _whole_upload(context)
            return _Admitted(frames)

        if source == "upload_name":
            return self.manager.upload_video(_upload_chunks(request_iterator), start.upload_name, admit=admission, tenant=tenant)
        if source == "video_uri":
            return self.manager.video_from_store(key_from_uri(start.video_uri, self.store.bucket), admit=admission, tenant=tenant)
        raise FieldError("video", "the session's start names no video: set upload_name (and send chunks, then "
                                  "upload_done) or video_uri")  # fmt: skip

    # -- caption and depth: the jobs' stage calls -------------------------------------------------

    def _conditioning(self, video: VideoRef, start: session_pb2.SessionStart, stopped: threading.Event, context):
        """Caption (unless `prompt`) and depth side by side, a `stage` event as each ends; returns
        (prompt, depth key). A generator: `yield from` it."""
        frames = min(video.frames or SOURCE_MAX_FRAMES, SOURCE_MAX_FRAMES)
        budgets = self.manager.runner.budgets
        calls = {"depth": lambda: self.stages.depth(video, False, budgets.call("depth", frames, stopped))}
        if not start.HasField("prompt"):
            calls["caption"] = lambda: self.stages.caption(video, False, budgets.call("caption", frames, stopped))
        results = {}
        with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="session-stage") as pool:
            pending = {pool.submit(call): stage for stage, call in calls.items()}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        stage = pending.pop(future)
                        results[stage] = future.result()
                        yield session_pb2.SessionEvent(stage=timing_to_proto(results[stage].timing))
            except StageCallFailed as failure:  # the session ends with the failed call's status
                stopped.set()  # the other stage's call stops too
                context.abort(failure.code, str(failure))
            finally:
                if pending:
                    stopped.set()
        prompt = start.prompt if start.HasField("prompt") else results["caption"].caption
        return prompt, results["depth"].key

    # -- the relay ----------------------------------------------------------------------------------

    def _relay(self, setup: session_pb2.GeneratorSessionSetup, request_iterator, context, stopped: threading.Event):
        if stopped.is_set():
            return  # the client left while caption and depth ran
        try:
            call = self.stages.open_session(setup, timeout=_time_left(context))
        except StageCallFailed as failure:  # no generator replica became ready
            context.abort(failure.code, str(failure))
        except grpc.RpcError as error:  # a refusal to open (RESOURCE_EXHAUSTED: the replica is full)
            _abort_as(context, error)
        refusal: list[Exception] = []

        def forward() -> None:
            try:
                for message in request_iterator:
                    part = message.WhichOneof("part")
                    if part != "command":
                        raise FieldError(part or "part", _out_of_place(part))
                    with fields_under("command"):
                        check_command(message.command)
                    call.send(message.command)
            except grpc.RpcError:  # the client went away
                call.cancel()
            except Exception as error:  # a message out of place, or one that did not decode
                refusal.append(error)
                call.cancel()
            finally:
                call.done_sending()

        _on_termination(context, call.cancel)  # the client went away: the generator's stream ends
        threading.Thread(target=forward, name="session-commands", daemon=True).start()
        try:
            for event in call:
                yield event
        except grpc.RpcError as error:
            if refusal:
                raise refusal[0] from None
            if stopped.is_set():
                return  # the client is gone: nobody to tell
            _abort_as(context, error)
        if refusal:
            raise refusal[0]


class _Admitted:
    """What `admit` returns to the job manager: the frames the stages will use."""

    def __init__(self, frames: int) -> None:
        self.video_frames = frames


def check_command(command: session_pb2.SessionCommand) -> None:
    """FieldError for what is knowable wrong here: a camera that is not 16 finite numbers of an
    invertible matrix, a move with a number that is not finite, a command that sets nothing."""
    kind = command.WhichOneof("command")
    if kind is None:
        raise FieldError("command", "a SessionCommand must set one of cameras, move, pause, resume, reset, close")
    if kind == "cameras":
        if not command.cameras.cameras:
            raise FieldError("cameras.cameras", "a cameras command must carry at least one camera")
        for i, camera in enumerate(command.cameras.cameras):
            _check_camera(camera.w2c, f"cameras.cameras[{i}].w2c")
    elif kind == "move":
        for field, value in command.move.ListFields():
            if not math.isfinite(value):
                raise FieldError(f"move.{field.name}", f"move.{field.name} is {value}: expected a finite number")


def _check_camera(w2c, field: str) -> None:
    values = list(w2c)
    if len(values) != 16:
        raise FieldError(field, f"a camera is a world-to-camera 4x4 matrix, 16 numbers row-major; got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise FieldError(field, "a camera's 16 numbers must all be finite (no NaN or infinity)")
    if abs(_determinant(values)) < 1e-12:
        raise FieldError(field, "the camera matrix is not invertible (determinant 0): give a world-to-camera pose")


def _determinant(values: list[float]) -> float:
    """Of a 4x4 row-major matrix, by Laplace expansion (no numpy needed for one camera)."""
    def det3(m: list[list[float]]) -> float:
        return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))  # fmt: skip

    rows = [values[i * 4:(i + 1) * 4] for i in range(4)]
    total = 0.0
    for column in range(4):
        minor = [[row[c] for c in range(4) if c != column] for row in rows[1:]]
        total += (-1) ** column * rows[0][column] * det3(minor)
    return total


def _check_start(start: session_pb2.SessionStart) -> None:
    if start.jpeg_quality and not 1 <= start.jpeg_quality <= 100:
        raise FieldError("start.jpeg_quality", f"jpeg_quality {start.jpeg_quality}: expected 1-100 (0: the default, 85)")
    if start.autoencoder not in AUTOENCODERS:
        raise FieldError("start.autoencoder", f"unknown autoencoder enum value {start.autoencoder}")
    if start.time_policy not in session_pb2.TimePolicy.values():
        raise FieldError("start.time_policy", f"unknown time_policy enum value {start.time_policy}")
    if start.backpressure not in session_pb2.Backpressure.values():
        raise FieldError("start.backpressure", f"unknown backpressure enum value {start.backpressure}")


def _out_of_place(part: str | None) -> str:
    if part == "start":
        return "a session has one `start`, its first message; this one came later"
    if part in ("chunk", "upload_done"):
        return f"`{part}` after the upload was done (or with a video_uri start): upload parts come only after a start with upload_name"
    return "an empty OpenSession message: set start, command, chunk or upload_done"


def _upload_chunks(request_iterator) -> Iterator[bytes]:
    """The upload's chunks, up to `upload_done`."""
    for message in request_iterator:
        part = message.WhichOneof("part")
        if part == "chunk":
            yield message.chunk
        elif part == "upload_done":
            return
        else:
            # plain ValueErrors (no field): raised inside the upload, whose fields are named under "start"
            raise ValueError(f"after a start with upload_name, the video's chunks come, ended by upload_done; "
                             f"got {part or 'an empty message'} before upload_done")
    raise ValueError("the request stream ended before upload_done: send the whole video, then upload_done")


def _abort_as(context, error: grpc.RpcError) -> None:
    """End the call with a downstream call's status: code, message and rich details as they came."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # a details trailer that does not match the code or message
        status = None
    if status is None:
        context.abort(error.code(), error.details() or "")
    context.abort_with_status(rpc_status.to_status(status))


def _time_left(context) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining < NO_DEADLINE_SECONDS else None


def _on_termination(context, callback) -> None:
    if not context.add_callback(callback):
        callback()  # the call has already ended
