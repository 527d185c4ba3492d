"""Cache-hit `Sealbox.get` from Python, beside its baselines, measured in one run.

Figures (median of several repeats, nanoseconds per call):

* ``pyo3_baseline``: ``sealbox._native._baseline(name)``, a plain PyO3 call that takes the same
  name and returns a new small native object: the floor for any native call from Python.
* ``sealbox_get_hit``: ``sb.get(name)`` on a warm cache (memory store), including the Secret
  object's creation and its wipe-and-free when it is dropped.
* ``aws_caching_hit``: ``aws_secretsmanager_caching.SecretCache.get_secret_string(name)`` hit on
  the same secret stored in moto; runs only when ``SEALBOX_BENCH_MOTO_ENDPOINT`` names a moto
  server (e.g. ``http://127.0.0.1:5000``) and the package is installed, else it is skipped with
  a message.
* ``threads4_gets_per_s``: 4 Python threads doing cache-hit gets on one client, total throughput,
  beside 1 thread.

Run against a release build of the wheel:
``maturin build --release`` then ``pip install`` it, then ``python benches/python/bench_get.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import sealbox
from sealbox import _native

NAME = "predis/prod/database/password"
VALUE = "bench-" + "x" * 26


def per_call_ns(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over `repeats` of the mean time per call across `calls` calls."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(samples)


def threaded_rate(fn: Callable[[], object], threads: int, calls: int) -> float:
    """Total calls per second with `threads` threads each making `calls` calls."""
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            fn()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    return threads * calls / (time.perf_counter() - started)


def aws_caching_getter() -> Callable[[], object] | str:
    """A warm `SecretCache.get_secret_string` hit on moto, or the reason it is skipped."""
    endpoint = os.environ.get("SEALBOX_BENCH_MOTO_ENDPOINT")
    if not endpoint:
        return "SEALBOX_BENCH_MOTO_ENDPOINT is not set (start `moto_server` and point it there)"
    try:
        import boto3
        from aws_secretsmanager_caching import SecretCache
    except ImportError as e:
        return f"needs boto3 and aws-secretsmanager-caching installed ({e.name} is missing)"
    client: Any = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        client.create_secret(Name=NAME, SecretString=VALUE)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=NAME, SecretString=VALUE)
    cache = SecretCache(client=client)
    if cache.get_secret_string(NAME) != VALUE:
        return "moto returned a different value"

    def get() -> object:
        return cache.get_secret_string(NAME)

    return get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    figures: dict[str, float | str] = {}
    with sealbox.Sealbox.memory(principal="svc:bench") as sb:
        sb.put(NAME, VALUE)
        first = sb.get(NAME)
        if not first.equals(VALUE):
            raise SystemExit("the stored value did not read back")

        def get() -> object:
            return sb.get(NAME)

        def baseline() -> object:
            return _native._baseline(NAME)

        for fn in (baseline, get):  # warm-up
            per_call_ns(fn, args.calls // 10, 1)
        # Interleave so both see the same machine load.
        base_runs, get_runs = [], []
        for _ in range(args.repeats):
            base_runs.append(per_call_ns(baseline, args.calls, 1))
            get_runs.append(per_call_ns(get, args.calls, 1))
        base_ns = statistics.median(base_runs)
        get_ns = statistics.median(get_runs)
        figures["pyo3_baseline_ns"] = round(base_ns, 1)
        figures["sealbox_get_hit_ns"] = round(get_ns, 1)
        figures["get_vs_baseline"] = round(get_ns / base_ns, 2)

        aws = aws_caching_getter()
        if isinstance(aws, str):
            figures["aws_caching_hit"] = f"skipped: {aws}"
            print(f"aws-secretsmanager-caching: skipped: {aws}")
        else:
            calls = max(args.calls // 50, 1000)
            per_call_ns(aws, calls // 10, 1)
            aws_ns = per_call_ns(aws, calls, args.repeats)
            figures["aws_caching_hit_ns"] = round(aws_ns, 1)
            figures["aws_caching_vs_get"] = round(aws_ns / get_ns, 1)

        thread_calls = args.calls // 4
        one = threaded_rate(get, 1, thread_calls)
        four = threaded_rate(get, 4, thread_calls)
        figures["threads1_gets_per_s"] = round(one)
        figures["threads4_gets_per_s"] = round(four)
        figures["threads4_vs_threads1"] = round(four / one, 2)

    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
