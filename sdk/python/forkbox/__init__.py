"""Forkbox's Python SDK: sandboxes for AI agents on a self-hosted Forkbox host.

    from forkbox import Sandbox

    with Sandbox() as sb:                       # FORKBOX_HOST, else http://127.0.0.1:7070
        sb.run_code("x = 41")
        print(sb.run_code("x + 1").result)      # 42

Standard library only; Python 3.9+.
"""

from ._version import __version__
from .async_sandbox import AsyncSandbox
from .client import ForkboxClient
from .errors import (
    AtCapacityError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ExecutorError,
    ForkboxConnectionError,
    ForkboxError,
    ForkboxTimeoutError,
    HostUnavailableError,
    InsufficientStorageError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
)
from .models import Diff, Execution, ExecutionError, FileEntry
from .sandbox import Sandbox

__all__ = [
    "__version__",
    "AsyncSandbox",
    "AtCapacityError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "Diff",
    "Execution",
    "ExecutionError",
    "ExecutorError",
    "FileEntry",
    "ForkboxClient",
    "ForkboxConnectionError",
    "ForkboxError",
    "ForkboxTimeoutError",
    "HostUnavailableError",
    "InsufficientStorageError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Sandbox",
]
