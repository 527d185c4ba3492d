"""Private native module of sealbox (Rust, PyO3). Use the ``sealbox`` package instead."""

import datetime
import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self, final

from typing_extensions import disjoint_base

__all__ = [
    "Sealbox",
    "_OpenedClient",
    "Secret",
    "_SecretBuffer",
    "SecretMetadata",
    "VersionInfo",
    "AuditReport",
    "Rotated",
    "RolledBack",
    "RotationStatus",
    "audit_verify",
    "_Baseline",
    "_baseline",
    "__version__",
]

__version__: str

@disjoint_base
class Sealbox:
    def __new__(cls, client: _OpenedClient) -> Self: ...
    @classmethod
    def open(cls, config_path: str | os.PathLike[str], *, principal: str | None = None) -> Self:
        """Opens a client from a YAML config file (stores, cache, audit, policy)."""
    @classmethod
    def local(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: str | os.PathLike[str],
        principal: str | None = None,
        cache: bool = True,
    ) -> Self:
        """Opens (or creates) the local vault at ``path`` with the master key in ``key_file``."""
    @classmethod
    def memory(cls, *, principal: str | None = None, cache: bool = True) -> Self:
        """A client over a fresh in-memory store; nothing is persisted."""
    def as_principal(self, principal: str) -> Self:
        """The same client (stores, cache, audit log) acting as another principal."""
    @property
    def principal(self) -> str:
        """The principal this client acts as."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def get(self, name: str, *, version: str | None = None, stage: str | None = None) -> Secret:
        """Reads a secret: the CURRENT version, or the given version id or stage."""
    def get_field(self, name: str, field: str) -> Secret:
        """Reads one top-level field of a JSON secret as its own Secret."""
    def _get_fields(self, name: str, fields: Sequence[str]) -> list[Secret]:
        """Reads several top-level fields of a JSON secret, one Secret per field, in order."""
    def put(
        self,
        name: str,
        value: bytes | bytearray | memoryview | str,
        *,
        stages: Sequence[str] | None = None,
        expected_current: str | None = None,
        create_only: bool = False,
        idempotency_token: str | None = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Stores a new version (CURRENT unless ``stages`` say otherwise) and returns its id;
        a bytearray is wiped once stored. ``expected_current``/``create_only`` make it a
        compare-and-set (``Conflict`` if another writer got there first)."""
    def refresh_now(self, name: str) -> None:
        """Refetches ``name`` now and replaces the cached value; raises if the store fails."""
    def list(self, prefix: str = "") -> list[str]:
        """The names under ``prefix``."""
    def describe(self, name: str) -> SecretMetadata:
        """Metadata of a secret, never its value."""
    def delete(self, name: str, *, force: bool = False) -> None:
        """Deletes a secret (soft delete unless ``force``)."""
    def rotate(
        self,
        name: str,
        *,
        value: bytes | bytearray | memoryview | str | None = None,
        command: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Rotated:
        """Rotates ``name`` (create PENDING, set, test, promote), resuming an interrupted
        rotation; with the config schedule's rotator, or ``command`` run per step with the value
        on its standard input; ``value`` instead of a generated one."""
    def rollback(self, name: str, *, command: Sequence[str] | None = None, timeout: float | None = None) -> RolledBack:
        """Undoes ``name``'s last rotation, or abandons its unfinished one."""
    def rotation_status(self, name: str) -> RotationStatus:
        """``name``'s rotation state: times, versions, failures; never a value."""
    def flush_audit(self) -> None:
        """Writes every queued audit event to the sinks."""
    def _reopen_after_fork(self) -> str | None:
        """In a forked child: replaces the inherited client by one made as it was; returns
        ``None``, or why it could not be (the client then keeps raising ``Forked``)."""
    def metrics(self) -> dict[str, int | dict[str, int]]:
        """This client's counters (``gets``, ``hits``, ``misses``, ``stale``, ``denies``,
        ``writes``, ``rotations``, ``alerts``, ``memory_lock_failures``,
        ``audit_events_lost``) and ``store_errors`` by kind."""
    def render_prometheus(self) -> str:
        """This client's metrics as Prometheus text, for a service's ``/metrics``."""
    def close(self) -> None:
        """Closes the client; later calls raise ValueError."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...
    def __reduce__(self) -> NoReturn: ...

@final
class _OpenedClient: ...

@final
class Secret:
    """A secret value in locked memory; see the ``sealbox`` package documentation."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def stages(self) -> tuple[str, ...]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def locked(self) -> bool: ...
    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...
    def close(self) -> None: ...
    def reveal(self) -> str:
        """An explicit copy of the value as ``str``, in ordinary (unprotected) memory."""
    def reveal_bytes(self) -> bytes:
        """An explicit copy of the value as ``bytes``, in ordinary (unprotected) memory."""
    def equals(self, other: Secret | bytes | bytearray | memoryview | str) -> bool:
        """Constant-time comparison (the length is not hidden)."""
    def __reduce__(self) -> NoReturn: ...
    def __reduce_ex__(self, protocol: Any, /) -> NoReturn: ...
    def __getstate__(self) -> NoReturn: ...
    def __copy__(self) -> NoReturn: ...
    def __deepcopy__(self, memo: Any, /) -> NoReturn: ...

@final
class _SecretBuffer:
    """The buffer exporter behind a secret's view (buffer protocol only)."""

@final
class VersionInfo:
    """One version of a secret."""

    @property
    def version(self) -> str: ...
    @property
    def stages(self) -> tuple[str, ...]: ...
    @property
    def created(self) -> datetime.datetime | None: ...

@final
class SecretMetadata:
    """What a store knows about a secret, without its value."""

    @property
    def name(self) -> str: ...
    @property
    def versions(self) -> tuple[VersionInfo, ...]: ...
    @property
    def current_version(self) -> str | None: ...
    @property
    def created(self) -> datetime.datetime | None: ...
    @property
    def updated(self) -> datetime.datetime | None: ...
    @property
    def last_rotated(self) -> datetime.datetime | None: ...
    @property
    def deleted(self) -> datetime.datetime | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def rotation_period(self) -> datetime.timedelta | None: ...

@final
class Rotated:
    """How a rotation ended."""

    @property
    def current(self) -> str: ...
    @property
    def previous(self) -> str | None: ...
    @property
    def resumed(self) -> bool: ...

@final
class RolledBack:
    """What a rollback did: ``outcome`` is ``"rolled_back"`` or ``"abandoned"``."""

    @property
    def outcome(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def undone(self) -> str | None: ...

@final
class RotationStatus:
    """One secret's rotation state, without its value."""

    @property
    def name(self) -> str: ...
    @property
    def last_rotated(self) -> datetime.datetime | None: ...
    @property
    def pending(self) -> str | None: ...
    @property
    def pending_step(self) -> str | None: ...
    @property
    def last_failure_at(self) -> datetime.datetime | None: ...
    @property
    def last_failure_step(self) -> str | None: ...
    @property
    def last_failure_reason(self) -> str | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def lease_holder(self) -> str | None: ...

@final
class AuditReport:
    """The outcome of verifying an audit log's hash chain."""

    @property
    def ok(self) -> bool: ...
    @property
    def lines(self) -> int: ...
    @property
    def last_seq(self) -> int | None: ...
    @property
    def anchored(self) -> bool: ...
    @property
    def cut_off_lines(self) -> list[int]: ...
    @property
    def files(self) -> list[str]: ...
    @property
    def retention_cut(self) -> int | None: ...
    @property
    def problem_file(self) -> str | None: ...
    @property
    def problem_line(self) -> int | None: ...
    @property
    def problem_kind(self) -> str | None: ...
    @property
    def problem_detail(self) -> str | None: ...
    def __bool__(self) -> bool: ...

def audit_verify(
    path: str | os.PathLike[str],
    *,
    key_file: str | os.PathLike[str] | None = None,
    allow_unanchored: bool = False,
    config: str | os.PathLike[str] | None = None,
) -> AuditReport:
    """Verifies an audit log's keyed hash chain and its ``PATH.head`` anchor (key default:
    ``PATH.key``; without one, with ``config``, the key the config's local vault keeps under
    its master key). A missing anchor is a ``"missing_anchor"`` problem unless
    ``allow_unanchored`` (for a log that never had one)."""

@final
class _Baseline:
    @property
    def name_len(self) -> int: ...

def _baseline(name: str) -> _Baseline: ...
