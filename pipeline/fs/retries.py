"""Counting the storage requests that had to be sent again.

Two layers retry S3 requests and keep a run exact through transient faults: botocore
(throttling, 500s, some connection errors), whose one trace is the attempt number in each
request's context, counted on the client's ``request-created`` event; and s3fs, which calls
again when a call still fails after botocore's attempts with a connection-level error or a
throttling answer, counted on the ``after-call-error`` and ``after-call`` events for exactly
the errors s3fs retries. Not counted: a connection that
drops while a response body is read (s3fs reads it again, below the events), and filesystems
other than s3fs.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["RetryCount", "retry_count"]

_ATTRIBUTE = "_imgstats_retries"
_lock = threading.Lock()


class RetryCount:
    """The running number of requests one storage client has sent again."""

    def __init__(self) -> None:
        self.value = 0

    def on_request(self, request: Any = None, **_: Any) -> None:
        """botocore's attempts after the first."""
        context = getattr(request, "context", None) or {}
        if context.get("retries", {}).get("attempt", 1) > 1:
            self.value += 1

    def on_call_error(self, exception: BaseException | None = None, **_: Any) -> None:
        """Calls that failed below HTTP with an error s3fs calls again for."""
        from s3fs.core import S3_RETRYABLE_ERRORS

        if isinstance(exception, S3_RETRYABLE_ERRORS):
            self.value += 1

    def on_call_done(self, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        """Calls answered with an error that s3fs calls again for (throttling)."""
        if getattr(http_response, "status_code", 200) < 300 or not isinstance(parsed, dict):
            return
        error = parsed.get("Error") or {}
        text = f"{error.get('Code', '')} {error.get('Message', '')}"
        if any(pattern in text for pattern in _S3FS_RETRIED_ANSWERS):
            self.value += 1


#: What s3fs looks for in an error answer to call again (``s3fs.core._error_wrapper``).
_S3FS_RETRIED_ANSWERS = ("SlowDown", "reduce your request rate", "XAmzContentSHA256Mismatch")

_NONE = RetryCount()  # filesystems without counted retries: stays 0


def retry_count(fs: Any) -> RetryCount:
    """The retry count of ``fs``'s client, counting from the first call.

    One count per client: everything sharing a (cached) filesystem shares its running total,
    so take differences for one piece of work; the same object comes back for the same
    client, so a set of counts adds each client once.
    """
    client = _s3_client(fs)
    if client is None:
        return _NONE
    with _lock:
        count = getattr(client, _ATTRIBUTE, None)
        if count is None:
            count = RetryCount()
            client.meta.events.register("request-created.s3", count.on_request)
            client.meta.events.register("after-call-error.s3", count.on_call_error)
            client.meta.events.register("after-call.s3", count.on_call_done)
            setattr(client, _ATTRIBUTE, count)
    return count


def _s3_client(fs: Any) -> Any:
    if not type(fs).__module__.startswith("s3fs"):
        return None
    return fs.connect()  # the aiobotocore client (made once per filesystem instance)
