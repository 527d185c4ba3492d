"""Rotation from Python: ``Sealbox.rotate``, ``rollback`` and ``rotation_status``.

* A rotation promotes a new value to ``CURRENT`` (the old one becomes ``PREVIOUS``); rollback
  restores the old one; the status shows when, and never a value.
* With a command rotator (``command=[...]`` or ``rotator: {exec: [...]}`` in the config's
  schedule) the command gets each step's name as its last argument and the value on its
  standard input, and its exit status decides the step.
* A failing step raises a typed exception (``Unavailable``) whose message holds no value;
  ``CURRENT`` is unchanged, the failure is in the status, and rollback abandons the attempt.
* After ``os.fork()``, a child rotates through the client it inherited (reopened), or, for a
  client that cannot be reopened, gets ``Forked`` with a message that says what to do.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

import sealbox
from conftest import fresh_value

NAME = "predis/prod/api/key"

pytestmark = pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")


def recording_command(tmp_path: Path, fail_at: str | None = None) -> list[str]:
    """A rotator script: appends each step it ran to ``steps`` and keeps the value it got on
    stdin in ``STEP.value``; at step ``fail_at`` it echoes the value to stderr and exits 1."""
    script = tmp_path / "rotate.sh"
    script.write_text(
        "#!/bin/sh\n"
        'dir="$1"; step="$2"\n'
        'cat > "$dir/$step.value"\n'
        'echo "$step" >> "$dir/steps"\n'
        f'if [ "$step" = "{fail_at or "-"}" ]; then cat "$dir/$step.value" >&2; exit 1; fi\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script), str(tmp_path)]


def steps(tmp_path: Path) -> list[str]:
    path = tmp_path / "steps"
    return path.read_text().split() if path.exists() else []


def test_rotate_promotes_a_new_value_and_rollback_restores_the_old(sb: sealbox.Sealbox) -> None:
    first = fresh_value("key")
    expected_first = bytes(first)
    original = sb.put(NAME, first)

    done = sb.rotate(NAME)
    assert isinstance(done, sealbox.Rotated)
    assert done.previous == original and done.current != original and not done.resumed
    assert not sb.get(NAME).equals(expected_first)
    meta = sb.describe(NAME)
    assert meta.current_version == done.current
    status = sb.rotation_status(NAME)
    assert isinstance(status, sealbox.RotationStatus)
    assert status.name == NAME and status.last_rotated is not None
    assert status.pending is None and status.failures == 0 and status.last_failure_step is None

    back = sb.rollback(NAME)
    assert (back.outcome, back.version, back.undone) == ("rolled_back", original, done.current)
    assert sb.get(NAME).equals(expected_first)


def test_a_command_rotator_gets_each_step_and_the_value_on_stdin(sb: sealbox.Sealbox, tmp_path: Path) -> None:
    sb.put(NAME, fresh_value("old"))
    value = fresh_value("given")
    expected = bytes(value)
    done = sb.rotate(NAME, value=value, command=recording_command(tmp_path))
    assert value == bytearray(len(expected)), "the bytearray is wiped once staged"
    assert steps(tmp_path) == ["set", "test"]
    assert (tmp_path / "set.value").read_bytes() == expected
    assert (tmp_path / "test.value").read_bytes() == expected
    assert sb.get(NAME).equals(expected)
    assert sb.describe(NAME).current_version == done.current

    # Rollback tells the command to restore the previous value.
    sb.rollback(NAME, command=recording_command(tmp_path))
    assert steps(tmp_path) == ["set", "test", "restore"]
    assert sb.get(NAME).equals((tmp_path / "restore.value").read_bytes())


def test_a_failing_step_raises_unavailable_without_the_value_and_keeps_current(
    sb: sealbox.Sealbox, tmp_path: Path
) -> None:
    old = fresh_value("old")
    expected_old = bytes(old)
    before = sb.put(NAME, old)
    value = fresh_value("new")
    text = value.decode()
    with pytest.raises(sealbox.Unavailable) as info:
        sb.rotate(NAME, value=value, command=recording_command(tmp_path, fail_at="test"))
    message = str(info.value)
    assert "test" in message and text not in message
    assert "not shown" in message, "the script echoed the value: its stderr is withheld"
    assert info.value.kind == "unavailable"
    assert value == bytearray(text, "ascii"), "a failed rotation leaves the caller's bytearray"
    assert sb.get(NAME).equals(expected_old)
    assert sb.describe(NAME).current_version == before

    status = sb.rotation_status(NAME)
    assert status.failures == 1 and status.last_failure_step == "test"
    assert status.last_failure_reason is not None and text not in status.last_failure_reason
    assert status.pending is not None and status.pending_step == "set"
    assert status.last_failure_at is not None

    back = sb.rollback(NAME, command=recording_command(tmp_path))
    assert back.outcome == "abandoned" and back.version == status.pending
    assert sb.rotation_status(NAME).pending is None
    assert sb.get(NAME).equals(expected_old)


def test_bad_arguments_raise_typed_errors(sb: sealbox.Sealbox) -> None:
    sb.put(NAME, fresh_value())
    with pytest.raises(sealbox.InvalidInput, match="program"):
        sb.rotate(NAME, command=[])
    with pytest.raises(sealbox.InvalidInput, match="timeout"):
        sb.rotate(NAME, timeout=5.0)
    with pytest.raises(TypeError):
        sb.rotate(NAME, command="/bin/true")
    with pytest.raises(sealbox.InvalidInput):
        sb.rotate("../escape")


def test_the_config_schedule_chooses_the_rotator_and_the_policy_guards_it(tmp_path: Path) -> None:
    command = recording_command(tmp_path)
    config = tmp_path / "sealbox.yaml"
    config.write_text(
        "secrets:\n"
        "  provider: local\n"
        f"  config: {{path: {tmp_path / 'vault'}, key_file: {tmp_path / 'master.key'}}}\n"
        "principal: svc:rotator\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
        "policy:\n"
        "  rules:\n"
        '    - {principals: ["svc:rotator"], allow: [read, write, rotate], secrets: ["predis/*"]}\n'
        '    - {principals: ["svc:reader"], allow: [read], secrets: ["predis/*"]}\n'
        "rotation:\n"
        "  types: {user_password: 90d}\n"
        "  secrets:\n"
        f'    "predis/prod/clickhouse/*": {{type: user_password, rotator: {{exec: {json.dumps(command)}}}}}\n'
    )
    name = "predis/prod/clickhouse/password"
    with sealbox.Sealbox.open(config) as sb:
        sb.put(name, fresh_value("initial"))
        with pytest.raises(sealbox.AccessDenied):
            sb.as_principal("svc:reader").rotate(name)
        assert steps(tmp_path) == []
        sb.rotate(name)
        assert steps(tmp_path) == ["set", "test"]
        password = (tmp_path / "set.value").read_bytes()
        assert len(password) == 24, "a SOC2 user_password from the schedule's type"
        assert sb.get(name).equals(password)
        sb.flush_audit()
    audit = (tmp_path / "audit.jsonl").read_text()
    assert '"event":"rotation_finished"' in audit
    assert password.decode() not in audit


def wait_exit(pid: int, timeout: float = 60.0) -> int:
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


def test_a_rotation_in_a_forked_child_works_or_raises_forked(tmp_path: Path) -> None:
    local = sealbox.Sealbox.local(tmp_path / "vault", key_file=tmp_path / "master.key")
    memory = sealbox.Sealbox.memory()
    report = tmp_path / "child.json"
    try:
        original = local.put(NAME, fresh_value("before-fork"))
        memory.put(NAME, fresh_value())
        local.get(NAME)  # warm the parent's cache

        pid = os.fork()
        if pid == 0:
            out: dict[str, object] = {}
            try:
                # The inherited local client was reopened: the child rotates through it.
                done = local.rotate(NAME, command=recording_command(tmp_path))
                out["current"] = done.current
                out["previous"] = done.previous
                # A memory client cannot be reopened: a clear Forked, never a silent no-op.
                try:
                    memory.rotate(NAME)
                    out["memory"] = "rotated"
                except sealbox.Forked as e:
                    out["memory"] = e.kind
                    out["memory_message"] = str(e)
            except BaseException as e:
                out["error"] = f"{type(e).__name__}: {e}"
            report.write_text(json.dumps(out))
            os._exit(0)
        assert wait_exit(pid) == 0
        out = json.loads(report.read_text())
        assert "error" not in out, out["error"]
        assert out["previous"] == original
        assert out["memory"] == "forked"
        assert "fork" in str(out["memory_message"]) and "open" in str(out["memory_message"])
        # The parent sees the child's rotation (its cache was dropped by nobody: refresh).
        local.refresh_now(NAME)
        assert local.describe(NAME).current_version == out["current"]
        assert local.get(NAME).equals((tmp_path / "set.value").read_bytes())
        assert steps(tmp_path) == ["set", "test"]
    finally:
        local.close()
        memory.close()
