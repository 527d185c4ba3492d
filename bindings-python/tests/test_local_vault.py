"""The API end to end against the encrypted local vault (and the quickstart that uses it)."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import sealbox
from conftest import fresh_value
from memscan import assemble, count_copies, split_value

REPO = Path(__file__).resolve().parents[2]


def open_vault(tmp_path: Path, *, cache: bool = True) -> sealbox.Sealbox:
    return sealbox.Sealbox.local(tmp_path / "vault", key_file=tmp_path / "master.key", cache=cache)


def test_round_trip_persists_across_clients(tmp_path: Path) -> None:
    value = fresh_value()
    expected = bytes(value)
    with open_vault(tmp_path) as sb:
        assert sb.put("predis/prod/database/password", value) == "1"
        assert value == bytearray(len(expected))
        sb.put("predis/prod/database/password", b"second")
    with open_vault(tmp_path) as sb:
        assert sb.get("predis/prod/database/password").equals(b"second")
        assert sb.get("predis/prod/database/password", version="1").equals(expected)
        assert sb.get("predis/prod/database/password", stage="PREVIOUS").version == "1"
        assert sb.list("predis/") == ["predis/prod/database/password"]
        meta = sb.describe("predis/prod/database/password")
        assert meta.current_version == "2"
        sb.delete("predis/prod/database/password", force=True)
        with pytest.raises(sealbox.NotFound):
            sb.get("predis/prod/database/password")


def test_key_file_is_created_private(tmp_path: Path) -> None:
    open_vault(tmp_path).close()
    mode = stat.S_IMODE(os.stat(tmp_path / "master.key").st_mode)
    assert mode == 0o600


def test_values_are_not_stored_in_plaintext(tmp_path: Path) -> None:
    head, tail = split_value()
    with open_vault(tmp_path) as sb:
        sb.put("app/token", assemble(head, tail))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert head + tail not in data, f"plaintext found in {path.name}"


def test_wrong_master_key_is_refused(tmp_path: Path) -> None:
    with open_vault(tmp_path) as sb:
        sb.put("app/token", b"x")
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    os.chmod(tmp_path / "other.key", 0o600)
    with pytest.raises(sealbox.SealboxError) as info:
        with sealbox.Sealbox.local(tmp_path / "vault", key_file=tmp_path / "other.key") as sb:
            sb.get("app/token")
    assert isinstance(info.value, (sealbox.IntegrityError, sealbox.AccessDenied, sealbox.ConfigError))


def test_get_field_from_the_vault(tmp_path: Path) -> None:
    with open_vault(tmp_path) as sb:
        sb.put("predis/prod/database", '{"username": "predis", "password": "pw-42", "port": 5432}')
        with sb.get_field("predis/prod/database", "password") as view:
            assert view.tobytes() == b"pw-42"


def test_no_copy_survives_the_with_block_with_the_vault(tmp_path: Path) -> None:
    head, tail = split_value()
    with open_vault(tmp_path, cache=False) as sb:
        sb.put("predis/prod/database/password", assemble(head, tail))
        secret = sb.get("predis/prod/database/password")
        assert count_copies(head, tail) >= 1
        with secret as view:
            assert view[-1] == tail[-1]
        assert count_copies(head, tail) == 0


def test_quickstart_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "chain verified: True" in result.stdout
    assert "never printed" in result.stdout


def load_quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart", REPO / "examples" / "python" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quickstarts_way_leaves_no_copy_of_the_password(tmp_path: Path) -> None:
    """What the example teaches holds: the credential is built, stored and read through its
    fields without a copy of the password surviving anywhere in the process."""
    quickstart = load_quickstart()
    head, tail = split_value()
    document = quickstart.json_credential(b'"username":"predis",', assemble(head, tail))
    assert count_copies(head, tail) == 1, "only the document holds the password"
    with open_vault(tmp_path, cache=False) as sb:
        sb.put("predis/prod/database", document)
        assert not any(document)
        assert count_copies(head, tail) == 0, "put() wiped the document"
        creds = sb.get_fields("predis/prod/database", ["username", "password"])
        assert count_copies(head, tail) == 1, "the password field's own locked copy"
        with creds:
            assert creds.password[-1] == tail[-1] and bytes(creds.username) == b"predis"
        assert count_copies(head, tail) == 0, "leaving the block wiped it"


def test_refresh_now_picks_up_a_write_from_another_client(tmp_path: Path) -> None:
    with open_vault(tmp_path) as reader, open_vault(tmp_path) as writer:
        writer.put("app/shared", b"one")
        assert reader.get("app/shared").equals(b"one")
        writer.put("app/shared", b"two")
        assert reader.get("app/shared").equals(b"one"), "served from the reader's cache"
        reader.refresh_now("app/shared")
        assert reader.get("app/shared").equals(b"two")
