"""Fork: a client warmed in the parent keeps working in a forked child, transparently.

Secret memory is wiped in a forked child (``MADV_WIPEONFORK``) and the client's threads do not
exist there. Before this was handled, a child's cache hit returned an all-zero value with
success. Now the package reopens every inherited client in the child (``os.register_at_fork``)
from the same config file, vault and key file, so reads return the right value; what cannot be
reopened (secrets read before the fork, an in-memory client) raises ``Forked``, never zeros.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

import sealbox
from conftest import fresh_value

NAME = "predis/prod/api/auth-token"

# Python 3.12+ warns on fork() in a process with threads (the client's runtime has some);
# forking such a process is exactly what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")


def wait_exit(pid: int, timeout: float = 60.0) -> int:
    """The exit code of child ``pid``; a child that hangs past ``timeout`` is killed and fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            assert os.WIFEXITED(status), f"the child died (wait status {status})"
            return os.WEXITSTATUS(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the child hung for {timeout} s")


def config_file(tmp_path: Path) -> Path:
    config = tmp_path / "sealbox.yaml"
    config.write_text(
        "secrets:\n"
        "  provider: local\n"
        f"  config: {{path: {tmp_path / 'vault'}, key_file: {tmp_path / 'master.key'}}}\n"
        "principal: svc:worker\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
    )
    return config


def child_reads(client: sealbox.Sealbox, expected: bytes, held: sealbox.Secret, out: Connection) -> None:
    """A multiprocessing worker: what it saw, sent back to the parent."""
    report: dict[str, object] = {}
    try:
        with client.get(NAME) as view:  # the first read in the child: a miss
            report["miss"] = bytes(view) == expected
        report["hit"] = client.get(NAME).equals(expected)  # then a cache hit
        report["principal"] = client.principal
        try:
            held.reveal_bytes()
            report["held"] = "readable"
        except sealbox.Forked as e:
            report["held"] = e.kind
        client.flush_audit()
    except Exception as e:  # reported, so that the parent's assertion names it
        report["error"] = f"{type(e).__name__}: {e}"
    out.send(report)
    out.close()


def test_a_multiprocessing_fork_child_reads_through_a_client_warmed_in_the_parent(tmp_path: Path) -> None:
    value = fresh_value("token")
    expected = bytes(value)
    with sealbox.Sealbox.open(config_file(tmp_path)) as client:
        client.put(NAME, value)
        held = client.get(NAME)
        assert client.get(NAME).equals(expected)  # warm: the cache holds it

        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        worker = ctx.Process(target=child_reads, args=(client, expected, held, send))
        worker.start()
        send.close()
        assert receive.poll(60), "the worker sent nothing within 60 s"
        report = receive.recv()
        worker.join(60)
        assert worker.exitcode == 0
        assert report == {"miss": True, "hit": True, "principal": "svc:worker", "held": "forked"}

        # The parent's client and secret are untouched.
        assert held.equals(expected)
        assert client.get(NAME).equals(expected)
        client.flush_audit()
    audit = (tmp_path / "audit.jsonl").read_text()
    assert audit.count('"secret.read"') == 5  # 3 in the parent, 2 in the worker


def test_os_fork_reopens_a_local_client_and_refuses_what_cannot_be_reopened(tmp_path: Path) -> None:
    value = fresh_value("key")
    expected = bytes(value)
    local = sealbox.Sealbox.local(tmp_path / "vault", key_file=tmp_path / "master.key")
    memory = sealbox.Sealbox.memory()
    try:
        local.put(NAME, value)
        memory.put(NAME, fresh_value())
        held = local.get(NAME)
        memory.get(NAME)  # cached in the memory client too

        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                # Reopened transparently: the right value, twice (miss, then hit).
                if not local.get(NAME).equals(expected) or not local.get(NAME).equals(expected):
                    code = 2
                with pytest.raises(sealbox.Forked):
                    held.reveal_bytes()
                with pytest.raises(sealbox.Forked):
                    with held:
                        pass
                # An in-memory client's values are gone: it refuses, never answers zeros.
                with pytest.raises(sealbox.Forked, match="before fork"):
                    memory.get(NAME)
                local.put("predis/prod/from-child", b"written by the child")
            except BaseException:
                code = code or 3
            os._exit(code)
        assert wait_exit(pid) == 0
        assert held.equals(expected)
        assert local.get("predis/prod/from-child").equals(b"written by the child")
        assert memory.get(NAME).closed is False
    finally:
        local.close()
        memory.close()
