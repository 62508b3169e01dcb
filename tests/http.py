"""HTTP calls of the tests to presigned URLs, retried on connection errors as any S3 client would.

The object store may be restarted under the tests (radosgw is supervised, see ceph.sh); a refused
connection during its second of restart is not what the tests are about.
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed


@retry(
    retry=retry_if_exception_type(httpx.TransportError), wait=wait_fixed(0.5), stop=stop_after_delay(30), reraise=True
)
def put(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.put(url, timeout=60, **kwargs)


@retry(
    retry=retry_if_exception_type(httpx.TransportError), wait=wait_fixed(0.5), stop=stop_after_delay(30), reraise=True
)
def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=60)
