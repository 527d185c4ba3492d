"""Exception classes raised by sealbox.

Every error from the Rust core arrives as one of these classes, chosen by its kind. ``kind`` keeps
the precise core kind (``"wrong_key"``, ``"truncated"``, ...) for logs and operators, and
``request_id`` the provider's request id when a remote store failed. No message ever contains a
secret value.
"""

from __future__ import annotations

__all__ = [
    "SealboxError",
    "NotFound",
    "AccessDenied",
    "Unavailable",
    "IntegrityError",
    "ConfigError",
    "InvalidInput",
    "Conflict",
    "Unsupported",
]


class SealboxError(Exception):
    """Base class of every sealbox error."""

    kind: str
    """The core's error kind, e.g. ``"not_found"`` or ``"wrong_key"``."""
    request_id: str | None
    """The remote provider's request id, if the error came from one."""

    def __init__(self, message: str, kind: str = "internal", request_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.request_id = request_id

    def __reduce__(self) -> tuple[type[SealboxError], tuple[str, str, str | None]]:
        return (type(self), (str(self), self.kind, self.request_id))


class NotFound(SealboxError, LookupError):
    """The secret, version, stage or key does not exist."""


class AccessDenied(SealboxError, PermissionError):
    """The policy, the store or the provider refused the principal."""


class Unavailable(SealboxError):
    """The store or key provider failed transiently; retrying later may succeed."""


class IntegrityError(SealboxError):
    """Stored data cannot be trusted or opened: tampered, moved, truncated, a wrong key, a
    newer format, or a retired or destroyed key (see ``kind``)."""


class ConfigError(SealboxError):
    """The configuration is malformed, incomplete or refers to something unknown."""


class InvalidInput(SealboxError, ValueError):
    """An argument was malformed: a bad secret name or stage, invalid UTF-8, a missing JSON field."""


class Conflict(SealboxError):
    """Another writer won a race, or the name already exists where a new one was required."""


class Unsupported(SealboxError, NotImplementedError):
    """The store or this build does not support the operation."""
