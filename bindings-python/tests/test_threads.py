"""Many threads on one client: no crash, no wrong value, and the GIL is released in store calls."""

from __future__ import annotations

import threading

import sealbox


def test_eight_threads_times_ten_thousand_gets(sb: sealbox.Sealbox) -> None:
    names = [f"predis/prod/shard-{i}" for i in range(8)]
    expected = {}
    for name in names:
        value = f"value-of-{name}"
        expected[name] = value.encode()
        sb.put(name, value)
    errors: list[BaseException] = []
    counts = [0] * 8
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        try:
            barrier.wait()
            name = names[index]
            for i in range(10_000):
                secret = sb.get(name)
                if i % 1000 == 0:
                    with secret as view:
                        assert view == expected[name]
                else:
                    assert secret.version == "1"
                counts[index] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert counts == [10_000] * 8


def test_threads_sharing_one_secret_and_closing_it_concurrently(sb: sealbox.Sealbox) -> None:
    sb.put("app/shared", b"shared-value")
    secret = sb.get("app/shared")
    outcomes: list[str] = []
    lock = threading.Lock()

    def reader() -> None:
        for _ in range(2_000):
            try:
                ok = secret.equals(b"shared-value")
                result = "equal" if ok else "unequal"
            except ValueError:
                result = "closed"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    secret.close()
    for t in threads:
        t.join()
    assert set(outcomes) <= {"equal", "closed"}
    assert outcomes[-1] == "closed" or secret.closed


def test_close_while_other_threads_use_the_client() -> None:
    client = sealbox.Sealbox.memory()
    client.put("app/x", b"x")
    seen: set[str] = set()

    def user() -> None:
        for _ in range(5_000):
            try:
                client.get("app/x")
                seen.add("ok")
            except ValueError:
                seen.add("closed")
                return

    threads = [threading.Thread(target=user) for _ in range(4)]
    for t in threads:
        t.start()
    client.close()
    for t in threads:
        t.join()
    assert seen <= {"ok", "closed"}
    assert client.closed
