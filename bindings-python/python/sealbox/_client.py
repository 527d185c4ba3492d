"""The public client class: the native client plus asyncio variants."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from sealbox import _native
from sealbox._native import Secret, SecretMetadata

__all__ = ["Sealbox"]


class Sealbox(_native.Sealbox):
    """A sealbox client: reads and writes secrets through the configured stores, with caching,
    audit and policy. Safe to share between threads; every store call releases the GIL.

    Build one with :meth:`open` (a YAML config), :meth:`local` (the encrypted local vault) or
    :meth:`memory` (tests). Use it as a context manager or call :meth:`close` when done.

    The ``a``-prefixed methods are asyncio variants: each runs the blocking call in a worker
    thread (:func:`asyncio.to_thread`), so the event loop keeps running while a store answers.
    """

    async def aget(self, name: str, *, version: str | None = None, stage: str | None = None) -> Secret:
        """Async :meth:`get`."""
        return await asyncio.to_thread(self.get, name, version=version, stage=stage)

    async def aget_field(self, name: str, field: str) -> Secret:
        """Async :meth:`get_field`."""
        return await asyncio.to_thread(self.get_field, name, field)

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

    async def aflush_audit(self) -> None:
        """Async :meth:`flush_audit`."""
        await asyncio.to_thread(self.flush_audit)
