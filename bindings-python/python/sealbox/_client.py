"""The public client class: the native client plus asyncio variants."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping, Sequence

from sealbox import _native
from sealbox._fields import SecretFields
from sealbox._native import RolledBack, Rotated, RotationStatus, Secret, SecretMetadata

__all__ = ["Sealbox"]

# Every open client, so that a forked child can reopen the ones it inherited.
_live: weakref.WeakSet[Sealbox] = weakref.WeakSet()


def _reopen_in_child() -> None:
    """Runs in every child right after ``os.fork()`` (``multiprocessing``'s fork start method,
    gunicorn/uWSGI/Celery prefork workers): the inherited clients' cached secrets are wiped
    there and their threads do not exist, so each is replaced by one made as it was. One that
    cannot be (an in-memory client) keeps raising :class:`~sealbox.Forked`."""
    for client in list(_live):
        if not client.closed:
            client._reopen_after_fork()


os.register_at_fork(after_in_child=_reopen_in_child)


class Sealbox(_native.Sealbox):
    """A sealbox client: reads and writes secrets through the configured stores, with caching,
    audit and policy. Safe to share between threads; every store call releases the GIL.

    Build one with :meth:`open` (a YAML config), :meth:`local` (the encrypted local vault) or
    :meth:`memory` (tests). Use it as a context manager or call :meth:`close` when done.

    The ``a``-prefixed methods are asyncio variants: each runs the blocking call in a worker
    thread (:func:`asyncio.to_thread`), so the event loop keeps running while a store answers.

    Fork: a client opened before ``os.fork()`` (``multiprocessing`` with the ``fork`` start
    method, pre-forking servers) is reopened in the child automatically, from the same config
    file, vault and key file, and principal, so it keeps working there. Secrets read before the
    fork are wiped in the child and raise :class:`~sealbox.Forked`; an in-memory client cannot
    be reopened (its values are gone) and raises :class:`~sealbox.Forked` too.
    """

    def __init__(self, client: _native._OpenedClient) -> None:
        # The native ``__new__`` took ``client``; this only registers the new client.
        super().__init__()
        _live.add(self)

    def get_fields(self, name: str, fields: Sequence[str]) -> SecretFields:
        """Reads several top-level fields of a JSON secret together: one store read or cache hit
        and one audit event, each field copied into locked memory of its own (the document is
        never handed to Python). Use the result in one ``with`` block, where each field is a
        read-only ``memoryview`` by attribute or item, all wiped at the block's end::

            with sb.get_fields("predis/prod/clickhouse", ["host", "port", "username", "password"]) as db:
                connect(host=db.host, port=db.port, user=db.username, password=db.password)

        Raises ``NotFound`` naming the first missing field (nothing is returned), ``InvalidInput``
        when the secret is not a JSON object, a field is null, an object or an array, a field is
        asked for twice or none is; ``TypeError`` when ``fields`` is a single ``str``. No error
        shows a value.
        """
        if isinstance(fields, str):
            raise TypeError("fields must be a sequence of field names, not a single str")
        names = list(fields)
        secrets = self._get_fields(name, names)
        return SecretFields(secrets[0].name, secrets[0].version, names, secrets)

    async def aget(self, name: str, *, version: str | None = None, stage: str | None = None) -> Secret:
        """Async :meth:`get`."""
        return await asyncio.to_thread(self.get, name, version=version, stage=stage)

    async def aget_field(self, name: str, field: str) -> Secret:
        """Async :meth:`get_field`."""
        return await asyncio.to_thread(self.get_field, name, field)

    async def aget_fields(self, name: str, fields: Sequence[str]) -> SecretFields:
        """Async :meth:`get_fields`."""
        return await asyncio.to_thread(self.get_fields, name, fields)

    async def aput(
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
        """Async :meth:`put`. A ``bytearray`` is wiped once stored, as with :meth:`put`."""
        return await asyncio.to_thread(
            self.put,
            name,
            value,
            stages=stages,
            expected_current=expected_current,
            create_only=create_only,
            idempotency_token=idempotency_token,
            description=description,
            tags=tags,
        )

    async def arefresh_now(self, name: str) -> None:
        """Async :meth:`refresh_now`."""
        await asyncio.to_thread(self.refresh_now, name)

    async def alist(self, prefix: str = "") -> list[str]:
        """Async :meth:`list`."""
        return await asyncio.to_thread(self.list, prefix)

    async def adescribe(self, name: str) -> SecretMetadata:
        """Async :meth:`describe`."""
        return await asyncio.to_thread(self.describe, name)

    async def adelete(self, name: str, *, force: bool = False) -> None:
        """Async :meth:`delete`."""
        await asyncio.to_thread(self.delete, name, force=force)

    async def arotate(
        self,
        name: str,
        *,
        value: bytes | bytearray | memoryview | str | None = None,
        command: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Rotated:
        """Async :meth:`rotate`."""
        return await asyncio.to_thread(self.rotate, name, value=value, command=command, timeout=timeout)

    async def arollback(
        self, name: str, *, command: Sequence[str] | None = None, timeout: float | None = None
    ) -> RolledBack:
        """Async :meth:`rollback`."""
        return await asyncio.to_thread(self.rollback, name, command=command, timeout=timeout)

    async def arotation_status(self, name: str) -> RotationStatus:
        """Async :meth:`rotation_status`."""
        return await asyncio.to_thread(self.rotation_status, name)

    async def aflush_audit(self) -> None:
        """Async :meth:`flush_audit`."""
        await asyncio.to_thread(self.flush_audit)
