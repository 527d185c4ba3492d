"""Interpreter shutdown with live secrets, live views and busy threads exits cleanly."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shutdown_with_live_secrets_views_and_cycles() -> None:
    result = run(
        """
        import sealbox
        sb = sealbox.Sealbox.memory()
        sb.put("predis/prod/database/password", bytearray(b"live-at-exit"))
        keep = [sb.get("predis/prod/database/password") for _ in range(100)]
        s = sb.get("predis/prod/database/password")
        view = s.__enter__()          # a view still exported at exit
        derived = view[1:]
        cycle = [s, view]
        cycle.append(cycle)           # reachable only through a cycle
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "live-at-exit" not in result.stderr


def test_shutdown_while_daemon_threads_are_inside_store_calls() -> None:
    result = run(
        """
        import threading, time, sealbox
        sb = sealbox.Sealbox.memory()
        sb.put("app/x", b"x")
        def spin():
            while True:
                sb.get("app/x").close()
        for _ in range(4):
            threading.Thread(target=spin, daemon=True).start()
        time.sleep(0.2)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_shutdown_with_an_unclosed_client_and_no_cleanup() -> None:
    result = run(
        """
        import sealbox
        clients = [sealbox.Sealbox.memory() for _ in range(3)]
        for c in clients:
            c.put("app/x", "v")
        secrets = [c.get("app/x") for c in clients]
        sealbox.Sealbox.memory().as_principal("user:late")
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
