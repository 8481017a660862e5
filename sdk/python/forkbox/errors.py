"""The exceptions the SDK raises: one class per API error code, mapped from the HTTP status in one place."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Dict, Mapping, Optional, Type


class ForkboxError(Exception):
    """The server answered with an error: its HTTP status, machine code (``"not_found"``…) and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.code})"


class BadRequestError(ForkboxError):
    """400: the request is malformed or asks for something invalid (an unknown template, a merge into itself…)."""


class AuthenticationError(ForkboxError):
    """401: no API key, or one the server does not know. Set FORKBOX_API_KEY or pass api_key."""


class PermissionDeniedError(ForkboxError):
    """403 ``admin_required``: a server-wide setting (a pool's size, deleting a template, /metrics)
    asked with an ordinary key. Use a key made with ``forkbox keys create --admin``."""


class NotFoundError(ForkboxError):
    """404: no such sandbox (closed, expired, merged away), file (code ``file_not_found``) or route."""


class ConflictError(ForkboxError):
    """409: the sandbox is in a state that refuses the call; ``code`` says which.

    ``sandbox_dead``, ``sandbox_busy``, ``name_taken``, ``lost``, ``wrong_state``, ``has_forks``.
    """


class PayloadTooLargeError(ForkboxError):
    """413: an upload, download or body over the server's limit."""


class RateLimitError(ForkboxError):
    """429: over a rate or count limit. ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class ExecutorError(ForkboxError):
    """500: the sandbox machinery failed on the server (set-up, agent, zygote)."""


class AtCapacityError(ForkboxError):
    """503: the host has no room for another sandbox right now."""


class HostUnavailableError(ForkboxError):
    """503 ``host_unavailable``, from an edge: the host that holds the sandbox is down or cut off
    (a create is never refused this way while another host can take it)."""


class InsufficientStorageError(ForkboxError):
    """507: the sandbox's disk quota is full."""


class ForkboxConnectionError(ForkboxError):
    """The server could not be reached, or the connection broke before its answer was complete.

    ``status`` is 0. The message names the address tried: check FORKBOX_HOST and that
    ``forkbox serve`` runs there.
    """

    def __init__(self, message: str, code: str = "connection_error") -> None:
        super().__init__(0, code, message)

    def __str__(self) -> str:
        return self.message


class ForkboxTimeoutError(ForkboxConnectionError):
    """The server did not answer within the client's ``timeout``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "timeout")


_BY_STATUS: Dict[int, Type[ForkboxError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    500: ExecutorError,
    503: AtCapacityError,
    507: InsufficientStorageError,
}


def error_from_response(status: int, reason: str, headers: Mapping[str, str], body: bytes) -> ForkboxError:
    """Builds the exception for an error answer: the body is ``{"error": "…", "code": "…"}`` from a
    Forkbox host; anything else (a proxy's HTML page, say) keeps its text and gets code ``http_error``."""
    code = "http_error"
    text = body.decode("utf-8", "replace").strip()
    message = text or reason or "error"
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            message = parsed["error"]
            code = str(parsed.get("code") or code)
    except ValueError:
        pass
    cls = HostUnavailableError if (status, code) == (503, "host_unavailable") else _BY_STATUS.get(status, ForkboxError)
    if cls is RateLimitError:
        return RateLimitError(status, code, message, _retry_after(headers.get("Retry-After")))
    return cls(status, code, message)


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
