"""Client SDK of the InSpatio-World coordinator (sync `Client`, asyncio `AsyncClient`)."""

from ..jobs.options import JobOptions
from .async_sdk import AsyncClient
from .sdk import Client, JobEvent, JobStatus, download_outputs

__all__ = ["AsyncClient", "Client", "JobEvent", "JobOptions", "JobStatus", "download_outputs"]
