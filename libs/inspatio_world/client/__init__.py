"""Client SDK of the InSpatio-World coordinator (sync `Client`, asyncio `AsyncClient`)."""

from .async_sdk import AsyncClient
from .sdk import Client, JobEvent, JobRequest, JobStatus, download_outputs

__all__ = ["AsyncClient", "Client", "JobEvent", "JobRequest", "JobStatus", "download_outputs"]
