"""Exception classes raised by sealbox.

Every error from the Rust core arrives as one of these classes, chosen by its kind. ``kind`` keeps
the precise core kind (``"wrong_key"``, ``"truncated"``, ...) for logs and operators;
``request_id`` is the ``request_id`` of the audit line that recorded the failed access (when the
client has an audit log), else the provider's request id; ``provider_request_id`` is the remote
store's own request id, when one failed. No message ever contains a secret value.

:class:`MemoryLockWarning` is a warning, not an error: sealbox could not lock secret memory.
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
    "KeyExhausted",
    "Forked",
    "MemoryLockWarning",
]


class SealboxError(Exception):
    """Base class of every sealbox error."""

    kind: str
    """The core's error kind, e.g. ``"not_found"`` or ``"wrong_key"``."""
    request_id: str | None
    """The ``request_id`` of the audit line that recorded this failed access (a client with an
    audit log audits every failed read, write, list, describe, delete and policy deny), else the
    remote provider's request id, else None."""
    provider_request_id: str | None
    """The remote provider's own request id (AWS ``x-amzn-RequestId``), if a remote store failed."""

    def __init__(
        self,
        message: str,
        kind: str = "internal",
        request_id: str | None = None,
        provider_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.request_id = request_id
        self.provider_request_id = provider_request_id

    def __reduce__(self) -> tuple[type[SealboxError], tuple[str, str, str | None, str | None]]:
        return (type(self), (str(self), self.kind, self.request_id, self.provider_request_id))


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


class KeyExhausted(SealboxError):
    """A key reached its limit of encryptions and could not be rotated automatically; rotate it
    (``sealbox keys rotate``) before writing again. Reads are not affected."""


class Forked(SealboxError):
    """The client or secret was made before ``os.fork()`` and used in the child, where its
    secret memory is wiped and its threads do not exist. A :class:`~sealbox.Sealbox` is reopened
    in the child automatically where it can be (see :class:`~sealbox.Sealbox`); a client that
    cannot be (an in-memory one) and secrets read before the fork raise this: read them again
    from a client of the child."""


class MemoryLockWarning(RuntimeWarning):
    """The kernel refused to lock secret memory (``RLIMIT_MEMLOCK``), so secrets may be written to
    swap. Issued once per process, on the first client call after the first failure; the
    failures are also counted in ``Sealbox.metrics()["memory_lock_failures"]`` and the
    ``sealbox_memory_lock_failures_total`` Prometheus counter. Raise the limit (``ulimit -l``,
    ``LimitMEMLOCK=`` in systemd) or grant ``CAP_IPC_LOCK`` to fix."""
