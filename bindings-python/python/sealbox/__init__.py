"""sealbox: secrets in locked memory, an encrypted local vault, one API over every store.

Quick start::

    import sealbox

    with sealbox.Sealbox.local("vault.db", key_file="vault.key") as sb:
        sb.put("predis/prod/database/password", bytearray(b"..."))  # the bytearray is wiped
        with sb.get("predis/prod/database/password") as view:      # memoryview, no copy
            connect(password=view)
        # leaving the block wiped the bytes and invalidated the view

A structured credential (several fields of one JSON secret) is read in one go, each field in
locked memory of its own, all wiped together::

    with sb.get_fields("predis/prod/clickhouse", ["host", "port", "username", "password"]) as db:
        connect(host=db.host, port=db.port, user=db.username, password=db["password"])

A :class:`Secret` never shows its value in ``repr``/``str``, refuses pickling and copying, and is
wiped on ``close()`` or at the end of its ``with`` block; :meth:`Secret.reveal` and
:meth:`Secret.reveal_bytes` are the explicit, unprotected copies.

Rotation (create ``PENDING``, set it on the target, test it, promote it; resumable, undoable)::

    done = sb.rotate("predis/prod/api/key")                  # the config's schedule says how
    sb.rotate("predis/prod/clickhouse", command=["/usr/local/bin/rotate-clickhouse"])
    sb.rotation_status("predis/prod/api/key").last_failure_reason
    sb.rollback("predis/prod/api/key")

Errors are :class:`SealboxError` subclasses; no message contains a secret value.
"""

from __future__ import annotations

from sealbox._client import Sealbox
from sealbox._errors import (
    AccessDenied,
    ConfigError,
    Conflict,
    Forked,
    IntegrityError,
    InvalidInput,
    KeyExhausted,
    MemoryLockWarning,
    NotFound,
    SealboxError,
    Unavailable,
    Unsupported,
)
from sealbox._fields import SecretFields
from sealbox._native import (
    AuditReport,
    RolledBack,
    Rotated,
    RotationStatus,
    Secret,
    SecretMetadata,
    VersionInfo,
    __version__,
    audit_verify,
)

__all__ = [
    "Sealbox",
    "Secret",
    "SecretMetadata",
    "VersionInfo",
    "AuditReport",
    "Rotated",
    "RolledBack",
    "RotationStatus",
    "audit_verify",
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
    "SecretFields",
    "__version__",
]
