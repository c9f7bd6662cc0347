"""The asyncio twin of `sdk.Client`: the same calls, awaited (grpc.aio); downloads run in a thread.
`token` and `tls` mean what they mean for `Client`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import grpc

from ..jobs.options import JobOptions
from ..rpc.channels import ClientTLS, open_aio_channel
from ..rpc.generated import coordinator_pb2, coordinator_pb2_grpc
from ..rpc.tokens import client_token
from .reconnect import DEFAULT_RECONNECT_S, ReconnectBudget, SeenEvents, probe_failure
from .sdk import JobEvent, JobStatus, download_outputs, fetch_block, image_submit_messages, submit_messages

if TYPE_CHECKING:
    from .async_session import AsyncSession

T = TypeVar("T")


class AsyncClient:
    def __init__(self, address: str = "127.0.0.1:50051", timeout: float = 60.0, attempts: int = 6, backoff: float = 0.5, *,
                 token: str | None = None, tls: ClientTLS | bool | None = None) -> None:  # fmt: skip
        self.address, self.tls = address, ClientTLS.resolve(tls)
        self.channel = open_aio_channel(address, self.tls, client_token(token))  # the token lives in the channel only
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff

    def __repr__(self) -> str:
        return f"AsyncClient({self.address!r}, {self.tls.describe(self.address)})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self.attempts):
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.attempts - 1:
                    raise
                await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    async def submit(self, video: str | Path, options: JobOptions, timeout: float | None = None) -> JobStatus:
        job = await self._retry(lambda: self.stub.SubmitJob(submit_messages(video, options), timeout=timeout or self.timeout))
        return JobStatus.from_proto(job)

    async def submit_images(self, images: Sequence[str | Path], options: JobOptions, timeout: float | None = None,
                            geometry: str | Path | None = None) -> JobStatus:  # fmt: skip
        """As `Client.submit_images`."""
        job = await self._retry(lambda: self.stub.SubmitJob(image_submit_messages(images, options, geometry),
                                                            timeout=timeout or self.timeout))  # fmt: skip
        return JobStatus.from_proto(job)

    async def get(self, job_id: str) -> JobStatus:
        request = coordinator_pb2.GetJobRequest(job_id=job_id)
        return JobStatus.from_proto(await self._retry(lambda: self.stub.GetJob(request, timeout=self.timeout)))

    async def list(self, limit: int = 100) -> list[JobStatus]:
        response = await self._retry(lambda: self.stub.ListJobs(coordinator_pb2.ListJobsRequest(limit=limit), timeout=self.timeout))
        return [JobStatus.from_proto(job) for job in response.jobs]

    async def cancel(self, job_id: str, wait: bool = False, timeout: float | None = None) -> JobStatus:
        """As `Client.cancel`: the state at the request, or with `wait` the status once the job has ended."""
        request = coordinator_pb2.CancelJobRequest(job_id=job_id)
        status = JobStatus.from_proto(await self._retry(lambda: self.stub.CancelJob(request, timeout=self.timeout)))
        return await self.wait(job_id, timeout=timeout) if wait and not status.finished else status

    async def watch(self, job_id: str, timeout: float | None = None,
                    reconnect_s: float = DEFAULT_RECONNECT_S) -> AsyncIterator[JobEvent]:
        """As `Client.watch`: reconnects while the job goes on, each block index seen once."""
        request = coordinator_pb2.WatchJobRequest(job_id=job_id)
        budget, seen = ReconnectBudget(timeout, reconnect_s, self.backoff), SeenEvents()
        while True:
            try:
                async for message in self.stub.WatchJob(request, timeout=budget.stream_timeout()):
                    budget.heard_from_server()
                    event = JobEvent.from_proto(message)
                    if seen.admit(event):
                        yield event
                    if event.kind == "finished":
                        return
                error = None
            except grpc.aio.AioRpcError as exc:
                error = exc
            await self._wait_for_coordinator(job_id, budget, error)

    async def _wait_for_coordinator(self, job_id: str, budget: ReconnectBudget, error: grpc.RpcError | None) -> None:
        """As `Client._wait_for_coordinator`."""
        probe = coordinator_pb2.GetJobRequest(job_id=job_id)
        while (delay := budget.next_delay(error)) is not None:
            await asyncio.sleep(delay)
            try:
                await self.stub.GetJob(probe, timeout=budget.probe_timeout())
            except grpc.aio.AioRpcError as exc:
                error = probe_failure(exc)
                continue
            budget.heard_from_server()
            return
        if error is not None:
            raise error
        raise TimeoutError(f"watch of job {job_id}: no end of the job within the watch's time")

    async def wait(self, job_id: str, on_event: Callable[[JobEvent], None] | None = None, timeout: float | None = None) -> JobStatus:
        async for event in self.watch(job_id, timeout=timeout):
            if on_event is not None:
                on_event(event)
            if event.kind == "finished":
                return event.status
        return await self.get(job_id)

    # the same blocking download code as Client's, in a worker thread so the event loop keeps running
    async def download(self, status: JobStatus, out_dir: str | Path) -> dict[str, Path]:
        return await asyncio.to_thread(download_outputs, status, out_dir)

    async def fetch_block(self, event: JobEvent, path: str | Path) -> Path:
        return await asyncio.to_thread(fetch_block, event, path)

    def session(self, video: str | Path | None = None, *, video_uri: str | None = None, prompt: str | None = None,
                seed: int = 0, autoencoder: str = "taehv", time_policy: str = "bounce", backpressure: str = "latest",
                jpeg_quality: int = 85, timeout: float | None = None) -> "AsyncSession":  # fmt: skip
        """As `Client.session`, for `async with` (client/async_session.py)."""
        from .async_session import AsyncSession
        from .session import start_messages

        opening = start_messages(video, video_uri=video_uri, prompt=prompt, seed=seed, autoencoder=autoencoder,
                                 time_policy=time_policy, backpressure=backpressure, jpeg_quality=jpeg_quality)  # fmt: skip
        return AsyncSession(self.channel, opening, timeout, self.attempts, self.backoff)
