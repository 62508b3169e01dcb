"""The Python client of Genobase's intake: upload files, follow them, read their records and
download their results, with typed answers, retries and resumable multipart transfers.

    from genobase.client import Client
    with Client("http://localhost:8000", api_key) as client:
        upload = client.upload("sample.fasta", labels={"run": "7"}, wait=True)

See docs/client.md.
"""

from genobase.client.api import Client
from genobase.client.errors import (
    AuthenticationError,
    ClientError,
    ConflictError,
    NotFoundError,
    RefusedError,
    TimedOutError,
    UnreachableError,
)
from genobase.client.models import (
    FINAL_STATES,
    Record,
    TransferProgress,
    Upload,
    UploadPage,
    UploadResult,
    UploadSummary,
)
from genobase.client.models import Problem as Problem

__all__ = [
    "FINAL_STATES",
    "AuthenticationError",
    "Client",
    "ClientError",
    "ConflictError",
    "NotFoundError",
    "Problem",
    "Record",
    "RefusedError",
    "TimedOutError",
    "TransferProgress",
    "UnreachableError",
    "Upload",
    "UploadPage",
    "UploadResult",
    "UploadSummary",
]
