"""Client SDK of the InSpatio-World coordinator (sync `Client`, asyncio `AsyncClient`).

Import-light: no model code, torch or PyAV is loaded with it (a test checks).
"""

from ..jobs.options import JobOptions
from ..rpc.channels import ClientTLS
from ..rpc.rich_errors import ErrorDetails, FieldViolation, QuotaViolation, error_details
from .async_sdk import AsyncClient
from .sample_video import write_sample_video
from .sdk import Client, JobEvent, JobStatus, VideoRef, download_outputs, fetch_block
from .session import Session, SessionBlock, SessionEnded, SessionInfo

__all__ = ["AsyncClient", "Client", "ClientTLS", "ErrorDetails", "FieldViolation", "JobEvent", "JobOptions", "JobStatus",
           "QuotaViolation", "Session", "SessionBlock", "SessionEnded", "SessionInfo", "VideoRef", "download_outputs",
           "error_details", "fetch_block", "write_sample_video"]
