"""A refused memory lock is not silent in Python: one sealbox.MemoryLockWarning per process and a
count in metrics() and the Prometheus text.

The child lowers RLIMIT_MEMLOCK to 0 before importing sealbox. Root ignores that limit through
CAP_IPC_LOCK, so as root the child also runs without that capability (setpriv, util-linux).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, resource, warnings
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    import sealbox

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb = sealbox.Sealbox.memory()
        sb.put("app/token", bytearray(b"x" * 32))
        secret = sb.get("app/token")
        again = sb.get("app/token")
        with secret as view:
            n = view.nbytes
    text = sb.render_prometheus()
    line = next(l for l in text.splitlines() if l.startswith("sealbox_memory_lock_failures_total "))
    print(json.dumps({
        "locked": [secret.locked, again.locked],
        "metric": sb.metrics()["memory_lock_failures"],
        "prometheus": int(line.split()[1]),
        "warnings": [
            [type(w.message).__name__, issubclass(w.category, RuntimeWarning), str(w.message)]
            for w in caught
        ],
        "n": n,
    }))
    """
)


def child_command() -> list[str]:
    command = [sys.executable, "-c", CHILD]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root, this test needs setpriv (util-linux) to drop CAP_IPC_LOCK")
        command = [setpriv, "--bounding-set=-ipc_lock", *command]
    return command


def test_a_refused_lock_warns_once_and_is_counted() -> None:
    result = subprocess.run(child_command(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["locked"] == [False, False], "RLIMIT_MEMLOCK=0 must refuse every lock"
    assert seen["metric"] > 0
    assert seen["prometheus"] == seen["metric"]
    assert len(seen["warnings"]) == 1, seen["warnings"]
    name, is_runtime_warning, message = seen["warnings"][0]
    assert name == "MemoryLockWarning" and is_runtime_warning
    assert "RLIMIT_MEMLOCK" in message and "memory_lock_failures" in message
    assert seen["n"] == 32
