"""asyncio variants: same results, and the event loop keeps running during store calls."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import sealbox
from conftest import fresh_value


def test_async_variants_round_trip(sb: sealbox.Sealbox) -> None:
    async def scenario() -> None:
        value = fresh_value()
        expected = bytes(value)
        assert await sb.aput("app/async/token", value) == "1"
        assert value == bytearray(len(expected))
        secret = await sb.aget("app/async/token")
        assert secret.equals(expected)
        assert (await sb.aget("app/async/token", version="1")).version == "1"
        await sb.aput("app/async/db", '{"password": "p-1"}')
        staged = await sb.aput("app/async/db", '{"password": "p-2"}', stages=["PENDING"])
        assert (await sb.aget("app/async/db", stage="PENDING")).version == staged
        await sb.arefresh_now("app/async/db")
        assert (await sb.aget_field("app/async/db", "password")).equals("p-1")
        assert sorted(await sb.alist("app/async/")) == ["app/async/db", "app/async/token"]
        assert (await sb.adescribe("app/async/token")).current_version == "1"
        await sb.aflush_audit()
        await sb.adelete("app/async/token", force=True)
        with pytest.raises(sealbox.NotFound):
            await sb.aget("app/async/token")

    asyncio.run(scenario())


def test_aget_field(sb: sealbox.Sealbox) -> None:
    async def scenario() -> None:
        await sb.aput("app/async/db", '{"password": "p-1"}')
        assert (await sb.aget_field("app/async/db", "password")).equals("p-1")

    asyncio.run(scenario())


class SlowStoreClient(sealbox.Sealbox):
    """A client whose get takes 200 ms, standing in for a remote store."""

    calls_on: list[int] = []

    def get(self, name: str, *, version: str | None = None, stage: str | None = None) -> sealbox.Secret:
        self.calls_on.append(threading.get_ident())
        time.sleep(0.2)
        return super().get(name, version=version, stage=stage)


def test_async_calls_do_not_block_the_event_loop() -> None:
    async def scenario(client: SlowStoreClient) -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        secrets = await asyncio.gather(*(client.aget("app/slow") for _ in range(4)))
        task.cancel()
        assert all(s.equals(b"v") for s in secrets)
        return ticks

    with SlowStoreClient.memory() as client:
        assert isinstance(client, SlowStoreClient)
        client.put("app/slow", b"v")
        started = time.monotonic()
        ticks = asyncio.run(scenario(client))
        elapsed = time.monotonic() - started
    # Four 200 ms calls ran in worker threads, concurrently, while the loop kept ticking.
    assert ticks >= 5
    assert elapsed < 0.7
    assert threading.get_ident() not in SlowStoreClient.calls_on
