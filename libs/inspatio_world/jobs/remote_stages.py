"""The stages over gRPC: the `StageClient` of a coordinator whose stages run as separate services.

Calls are idempotent (every stage output is content-addressed), so a call that finds a service
busy is simply retried with backoff; a service with no ready replica (restarting, or scaled to
zero and waking up) is waited for, up to `ready_wait_s`, before the call fails. Channels balance
calls over every address a name resolves to (`round_robin`: point them at headless Services), so
every replica of a stage gets work. Full jobs render inside the generator's call by default
(`stream_render`: GeneratorService.RenderAndGenerate, the first block does not wait for the whole
render); with it off, DepthRenderService.Render renders the whole video, then GeneratorService.Generate
fills it. Closing a generator stream cancels the RPC, which stops the generator; a stream broken by
the generator's side (killed, restarting, draining) is reopened (see `_generator_stream`).

Each call's deadline is its time budget (`StageCall`, jobs/budgets.py); a call past it fails with
BudgetExceeded (DEADLINE_EXCEEDED, naming the stage and the budget). A call in flight is cancelled
the moment its job's cancel event is set, so the stage stops at its next check, within one batch or
block, instead of the job waiting for the call to return.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import grpc

from ..media.decode import VideoInfo
from ..rpc.channels import ClientTLS, open_channel
from ..rpc.convert import (
    block_from_proto, generate_output_from_proto, images_rendered_from_proto, render_options_to_proto, render_output_from_proto,
    timing_from_proto,
)  # fmt: skip
from ..refusals import VersionNotServed
from ..rpc.options_proto import autoencoder_enum, version_enum
from ..rpc.generated import (
    caption_pb2, caption_pb2_grpc, common_pb2, depthrender_pb2, depthrender_pb2_grpc, generator_pb2, generator_pb2_grpc,
    session_pb2, session_pb2_grpc,
)  # fmt: skip
from ..stages.caption import CaptionOutput
from ..stages.depth import DepthOutput
from ..stages.generate import BlockPublished, GenerateInputs, GenerateOutput
from ..stages.render import RenderOptions, RenderOutput
from ..stopping import WorkStopped
from ..store.base import ObjectStore
from .budgets import StageCall
from .manifest import VideoRef
from .runner import ImagesRendered
from .session_call import CommandFeed, SessionCall

log = logging.getLogger(__name__)
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
CANCEL_POLL_S = 0.05  # how often a call in flight looks at its job's cancel event


class StageCallFailed(RuntimeError):
    """A stage service ended a call with an error status. The message (which becomes the job's
    error) names the call, the status and the service's own words, not gRPC's internals."""

    def __init__(self, call: str, code: grpc.StatusCode, details: str, attempts: int = 1) -> None:
        self.code = code
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{call}: {code.name}: {details}{tried}")

    @classmethod
    def from_error(cls, call: str, error: grpc.RpcError, attempts: int = 1) -> "StageCallFailed":
        return cls(call, error.code(), error.details(), attempts)


T = TypeVar("T")


class RemoteStages:
    def __init__(self, store: ObjectStore, caption_address: str, depthrender_address: str, generator_address: str,
                 attempts: int = 8, backoff_s: float = 0.5, timeout_s: float = 3600.0, ready_wait_s: float = 600.0,
                 tls: ClientTLS | None = None, token: str = "", stream_render: bool = True,
                 generator_v1_5_address: str = "") -> None:  # fmt: skip
        """`ready_wait_s`: how long a call waits for the stage to have a ready replica (starting, or
        waking from zero) before the job fails; `timeout_s`: the whole call's deadline; `tls` (default:
        plaintext on loopback, TLS elsewhere) and `token` (the service token) as `rpc.channels` uses them;
        `stream_render`: full jobs render inside the generator's call, block by block (first frames
        sooner, same outputs); False calls DepthRenderService.Render for the whole video first.
        `generator_address` serves model_version v1 jobs, `generator_v1_5_address` v1_5 jobs; an empty
        one serves none (`model_versions`). Live sessions use the v1 generator (else the v1_5 one)."""
        self.store = store
        self.streams_render = stream_render  # the runner's switch (jobs/runner.py StageClient)
        self.attempts, self.backoff_s, self.timeout_s, self.ready_wait_s = attempts, backoff_s, timeout_s, ready_wait_s
        options = [("grpc.lb_policy_name", "round_robin")]
        addresses = {"caption": caption_address, "depthrender": depthrender_address, "v1": generator_address,
                     "v1_5": generator_v1_5_address}  # fmt: skip
        self._addresses = {name: address for name, address in addresses.items() if address}
        self._channels = {name: open_channel(address, tls, token, options) for name, address in self._addresses.items()}
        self.model_versions = tuple(v for v in ("v1", "v1_5") if v in self._channels)
        if not self.model_versions:
            raise ValueError("no generator address: set INSPATIO_GENERATOR_ADDRESS and/or INSPATIO_GENERATOR_V1_5_ADDRESS")
        self._caption = caption_pb2_grpc.CaptionServiceStub(self._channels["caption"])
        self._depthrender = depthrender_pb2_grpc.DepthRenderServiceStub(self._channels["depthrender"])
        self._generators = {v: generator_pb2_grpc.GeneratorServiceStub(self._channels[v]) for v in self.model_versions}
        self._session_generator = self.model_versions[0]
        self._generator_sessions = session_pb2_grpc.GeneratorSessionServiceStub(self._channels[self._session_generator])

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def _ref(self, key: str, sha256: str = "") -> common_pb2.ObjectRef:
        return common_pb2.ObjectRef(bucket=self.store.bucket, key=key, sha256=sha256)

    def _call(self, name: str, start: Callable[[float], grpc.Future], budget: StageCall | None = None, service: str = "") -> T:
        """Start the call with `start(timeout_s)` (a unary `.future`, or a stream opener) and wait for
        its result; the call is cancelled when `budget`'s job is, and fails past `budget`'s deadline.
        `service`: the channel it goes over (default: the stage's; a generator call names its version)."""
        self._wait_until_ready(name, budget, service)
        budget = budget.from_now() if budget is not None else None  # waking a replica is not the stage's work
        deadline = budget.deadline if budget is not None else time.monotonic() + self.timeout_s
        for attempt in range(self.attempts):
            left = deadline - time.monotonic()
            if left <= 0 and budget is not None:
                raise budget.exceeded()
            future = start(max(left, 0.0))
            try:
                with _cancelled_with(budget, future.cancel):
                    return future.result()
            except grpc.FutureCancelledError:
                raise WorkStopped(f"{name}: the job was cancelled") from None
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt == self.attempts - 1:
                    raise self._failure(name, exc, budget) from exc
                time.sleep(min(self.backoff_s * 2**attempt, 10.0, max(deadline - time.monotonic(), 0.0)))
        raise AssertionError("unreachable")

    @staticmethod
    def _failure(name: str, error: grpc.RpcError, budget: StageCall | None, attempts: int = 1) -> Exception:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and budget is not None:
            return budget.exceeded()
        return StageCallFailed.from_error(name, error, attempts)

    def _wait_until_ready(self, name: str, budget: StageCall | None = None, service: str = "") -> None:
        index = service or {"caption": "caption", "depth": "depthrender", "render": "depthrender"}.get(name, self._session_generator)
        ready = grpc.channel_ready_future(self._channels[index])
        try:
            with _cancelled_with(budget, ready.cancel):  # a job cancelled while waiting stops waiting
                ready.result(timeout=self.ready_wait_s)
        except grpc.FutureCancelledError:
            raise WorkStopped(f"{name}: the job was cancelled while waiting for a ready replica") from None
        except grpc.FutureTimeoutError:
            details = f"no replica at {self._addresses[index]} became ready within {self.ready_wait_s:g} s"
            raise StageCallFailed(name, grpc.StatusCode.UNAVAILABLE, details) from None

    def caption(self, video: VideoRef, force: bool, call: StageCall | None = None) -> CaptionOutput:
        request = caption_pb2.CaptionRequest(video=self._ref(video.key, video.sha256), force=force)
        response = self._call("caption", lambda timeout: self._caption.Caption.future(request, timeout=timeout, wait_for_ready=True), call)
        return CaptionOutput(response.caption, response.caption_ref.key, timing_from_proto(response.timing), response.model.digest)

    def depth(self, video: VideoRef, force: bool, call: StageCall | None = None, model_version: str = "v1") -> DepthOutput:
        request = depthrender_pb2.DepthRequest(video=self._ref(video.key, video.sha256), force=force,
                                               model_version=version_enum(model_version))  # fmt: skip
        response = self._call("depth", lambda timeout: self._depthrender.EstimateDepth.future(request, timeout=timeout, wait_for_ready=True), call)
        info = response.video
        return DepthOutput(response.depth.key, VideoInfo(info.frames, info.fps, info.width, info.height, info.codec, 0.0),
                           timing_from_proto(response.timing), response.model.digest)  # fmt: skip

    def render(self, video: VideoRef, depth_key: str, options: RenderOptions, force: bool,
               call: StageCall | None = None) -> RenderOutput:  # fmt: skip
        request = depthrender_pb2.RenderRequest(
            video=self._ref(video.key, video.sha256), depth=self._ref(depth_key), options=render_options_to_proto(options, force),
        )  # fmt: skip
        response = self._call("render", lambda timeout: self._depthrender.Render.future(request, timeout=timeout, wait_for_ready=True), call)
        return render_output_from_proto(response)

    def render_images(self, images: tuple[VideoRef, ...], options: RenderOptions, force: bool, call: StageCall | None = None,
                      geometry: VideoRef | None = None) -> ImagesRendered:  # fmt: skip
        request = depthrender_pb2.RenderImagesRequest(images=[self._ref(image.key, image.sha256) for image in images],
                                                      options=render_options_to_proto(options, force))  # fmt: skip
        if geometry is not None:
            request.geometry.CopyFrom(self._ref(geometry.key, geometry.sha256))
        response = self._call("render", lambda timeout: self._depthrender.RenderImages.future(request, timeout=timeout, wait_for_ready=True), call)
        return images_rendered_from_proto(response)

    def generate(self, inputs: GenerateInputs, force: bool, call: StageCall | None = None) -> Iterator[BlockPublished | GenerateOutput]:
        request = generator_pb2.GenerateRequest(
            video=self._ref(inputs.video_key, inputs.video_sha256), schedule=self._ref(inputs.schedule_key),
            render=self._ref(inputs.render_key), mask=self._ref(inputs.mask_key), prompt=inputs.prompt,
            seed=inputs.seed, autoencoder=autoencoder_enum(inputs.autoencoder), force=force,
            model_version=version_enum(inputs.model_version),
        )  # fmt: skip
        generator = self._generator_of(inputs.model_version)
        return self._generator_stream("generate", lambda timeout: generator.Generate(request, timeout=timeout, wait_for_ready=True), call,
                                      inputs.model_version)  # fmt: skip

    def render_and_generate(self, video: VideoRef, depth_key: str, options: RenderOptions, prompt: str, seed: int,
                            autoencoder: str, force: bool, call: StageCall | None = None,
                            ) -> Iterator[RenderOutput | BlockPublished | GenerateOutput]:  # fmt: skip
        """The render made inside the generator's call, block by block (GeneratorService.RenderAndGenerate):
        the events of LocalStages.render_and_generate, reopened as `generate`'s stream is."""
        request = generator_pb2.RenderAndGenerateRequest(
            video=self._ref(video.key, video.sha256), depth=self._ref(depth_key), options=render_options_to_proto(options, force),
            prompt=prompt, seed=seed, autoencoder=autoencoder_enum(autoencoder),
        )  # fmt: skip
        generator = self._generator_of(options.model_version)
        return self._generator_stream("render+generate",
                                      lambda timeout: generator.RenderAndGenerate(request, timeout=timeout, wait_for_ready=True), call,
                                      options.model_version)  # fmt: skip

    def _generator_of(self, model_version: str):
        if model_version not in self._generators:
            raise VersionNotServed(f"model_version {model_version}: no generator address is configured for it "
                                   f"(served: {', '.join(self.model_versions)})")  # fmt: skip
        return self._generators[model_version]

    def _generator_stream(self, name: str, open_stream: Callable[[float], object], call: StageCall | None, version: str = "v1",
                          ) -> Iterator[RenderOutput | BlockPublished | GenerateOutput]:  # fmt: skip
        """The events of a generator stream (`open_stream(timeout)` opens it), as library objects.

        A stream that breaks because the generator went away (killed, restarting, draining) is
        reopened on a ready replica, up to `attempts` times. The generation is redone from its first
        block (outputs are deterministic and written under content keys, so the redone blocks
        overwrite themselves with the same bytes); blocks already handed over are skipped, so the
        caller sees each block index once, in order, and the render (of a RenderAndGenerate stream)
        once: a reopened call finds a render that was published in the store and reports it again."""
        seen = -1  # the highest block index handed over
        rendered = False  # the render event handed over
        output = None
        for attempt in range(self.attempts):
            stream = self._call(name, lambda timeout: _Opening(open_stream(timeout)), call, version)
            try:
                with _cancelled_with(call, stream.cancel):  # a cancel during a long block ends the stream at once
                    for event in stream:
                        kind = event.WhichOneof("event")
                        if kind == "block":
                            if event.block.index <= seen:
                                continue
                            seen = event.block.index
                            yield block_from_proto(event.block)
                        elif kind == "rendered":
                            if not rendered:
                                rendered = True
                                yield render_output_from_proto(event.rendered)
                        else:
                            output = generate_output_from_proto(event.done)
                break
            except grpc.RpcError as exc:
                if call is not None and call.cancel.is_set():
                    raise WorkStopped(f"{name}: the job was cancelled") from None
                if not _broken_by_server(exc) or attempt == self.attempts - 1:
                    raise self._failure(name, exc, call, attempts=attempt + 1) from exc
                log.warning("the generate stream broke after block %d (%s: %s: %s); reopening it, attempt %d of %d",
                            seen, name, exc.code().name, exc.details(), attempt + 2, self.attempts)
                time.sleep(min(self.backoff_s * 2**attempt, 10.0))
            finally:
                # Stops the generator when the job is cancelled; a no-op once the call has ended.
                stream.cancel()
        # Handed over only after the stream's end, so that a caller which stops reading at the result
        # does not cancel a finished call (the generator would count it CANCELLED, not OK).
        if output is not None:
            yield output

    def open_session(self, setup: session_pb2.GeneratorSessionSetup, timeout: float | None = None) -> SessionCall:
        """Open GeneratorSessionService.RunSession on a ready generator replica with `setup` (see
        jobs/session_call.py); `timeout`: the session's whole deadline (None: none).

        A replica that is unreachable when opening (UNAVAILABLE) is retried with backoff, up to
        `attempts` times: nothing has happened yet. Any other refusal is raised as the generator's own
        grpc.RpcError, details and trailers untouched: RESOURCE_EXHAUSTED (the replica holds its
        maximum of sessions) carries a RetryInfo, and the client decides whether to wait and retry. A
        session is never reopened once open: its state lives on the replica that failed."""
        self._wait_until_ready("generate")
        for attempt in range(self.attempts):
            feed = CommandFeed(setup)
            stream = self._generator_sessions.RunSession(iter(feed), timeout=timeout, wait_for_ready=True)
            try:
                first = next(stream, None)  # the first event (ready), or the refusal
            except grpc.RpcError as exc:
                feed.end()
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.attempts - 1:
                    raise
                log.warning("opening a generator session failed (%s: %s); retrying, attempt %d of %d",
                            exc.code().name, exc.details(), attempt + 2, self.attempts)
                time.sleep(min(self.backoff_s * 2**attempt, 10.0))
                continue
            return SessionCall(stream, feed, first)
        raise AssertionError("unreachable")


def _broken_by_server(error: grpc.RpcError) -> bool:
    """The stream ended because the generator went away, not because of the request: UNAVAILABLE
    (process killed, connection reset) or CANCELLED (a draining server cancels its calls). This
    side's own cancel never gets here: it happens only once the caller stopped reading."""
    return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class _PeekedStream:
    """A response stream whose first message was already read (so that opening errors surface)."""

    def __init__(self, stream, first) -> None:
        self._stream, self._first = stream, first

    def __iter__(self):
        if self._first is not None:
            yield self._first
        yield from self._stream

    def cancel(self) -> None:
        self._stream.cancel()


class _Opening:
    """A generate stream as a future of its opening: `result()` reads its first message (so that opening
    errors surface, and are retried), `cancel()` cancels the stream."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def result(self) -> _PeekedStream:
        return _PeekedStream(self._stream, next(self._stream, None))

    def cancel(self) -> None:
        self._stream.cancel()


@contextmanager
def _cancelled_with(call: StageCall | None, cancel: Callable[[], object]) -> Iterator[None]:
    """Run `cancel` as soon as `call`'s job is cancelled, while the block inside runs."""
    if call is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if call.cancel.wait(CANCEL_POLL_S):
                cancel()
                return

    watcher = threading.Thread(target=watch, name=f"cancel-{call.stage}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
