"""A `provider: gcp` config end to end, against the local GCP Secret Manager.

The server is the binary `local-secret-manager` (crate `sealbox-gcp-local`), started once for
this module and stopped after it: `SEALBOX_TEST_GCP_SERVER` names it (`scripts/test-python.sh`
builds it), else `target/debug/local-secret-manager`. Without it every test here is skipped,
unless `CI` is set: CI must never skip them. Each test checks the wire as well as the API: what
sealbox wrote is read back with plain REST calls, and what REST wrote is read through sealbox.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sealbox
from conftest import fresh_value

PROJECT = "sealbox-test"
ROOT = Path(__file__).resolve().parents[2]


def _server_binary() -> Path | None:
    given = os.environ.get("SEALBOX_TEST_GCP_SERVER")
    path = Path(given) if given else ROOT / "target" / "debug" / "local-secret-manager"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if os.environ.get("CI", "") not in ("", "0", "false"):
        pytest.fail(f"no local Secret Manager binary at {path}; CI must not skip the GCP tests")
    return None


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    binary = _server_binary()
    if binary is None:
        pytest.skip(
            "no local Secret Manager: cargo build -p sealbox-gcp-local, or set SEALBOX_TEST_GCP_SERVER"
        )
    # stdin is a pipe the server watches: it exits when the pipe closes, so a crashed test run
    # leaves no server behind.
    proc = subprocess.Popen(
        [str(binary), "--until-stdin-closes"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:"), f"the server printed {line!r}"
        yield line
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0, f"the local Secret Manager exited with {proc.returncode}"


@pytest.fixture
def prefix() -> str:
    """The server is shared by this module's tests: each works under its own prefix."""
    return f"pytest/{secrets.token_hex(6)}"


def _config(tmp_path: Path, endpoint: str, prefix: str) -> Path:
    config = tmp_path / "sealbox.yaml"
    config.write_text(
        f"""
stores:
  gcp:
    provider: gcp
    config:
      project: {PROJECT}
      endpoint: "{endpoint}"
      anonymous: true
      prefix: {prefix}
      operation_timeout: 5s
principal: svc:pytest-gcp
audit: {{path: ./audit.jsonl, mode: strict}}
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def gcp(tmp_path: Path, endpoint: str, prefix: str) -> Iterator[sealbox.Sealbox]:
    with sealbox.Sealbox.open(_config(tmp_path, endpoint, prefix)) as client:
        yield client


def _secret_id(prefix: str, name: str) -> str:
    # The names here hold only lower-case letters, digits, '-' and '/': '/' maps to '__'.
    return f"{prefix}/{name}".replace("/", "__")


def _rest(endpoint: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{endpoint}/v1/projects/{PROJECT}/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _rest_access(endpoint: str, secret_id: str, version: str) -> tuple[str, bytes]:
    out = _rest(endpoint, "GET", f"secrets/{secret_id}/versions/{version}:access")
    return out["name"].rsplit("/", 1)[1], base64.b64decode(out["payload"]["data"])


def test_round_trip_through_the_local_secret_manager(
    gcp: sealbox.Sealbox, endpoint: str, prefix: str, tmp_path: Path
) -> None:
    name = "database/password"
    value = fresh_value()
    expected = bytes(value)
    first = gcp.put(name, value)
    assert value == bytearray(len(expected)), "put wipes the bytearray it was given"
    assert first == "1", "GCP version numbers are sealbox's version ids"
    # On the wire: the server holds the value under the mapped id, with the `current` alias.
    assert _rest_access(endpoint, _secret_id(prefix, name), "current") == ("1", expected)

    with gcp.get(name) as view:
        assert view == expected
    second = gcp.put(name, b"rotated")
    assert second == "2"
    assert _rest_access(endpoint, _secret_id(prefix, name), "previous") == ("1", expected)
    got = gcp.get(name)
    assert got.equals(b"rotated") and got.version == "2" and "CURRENT" in got.stages
    assert gcp.get(name, stage="PREVIOUS").equals(expected)
    assert gcp.get(name, version=first).equals(expected)
    assert name in gcp.list("database")
    assert gcp.describe(name).current_version == second

    gcp.delete(name)
    with pytest.raises(sealbox.NotFound):
        gcp.get(name)
    gcp.flush_audit()
    log = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert expected.decode() not in log and "rotated" not in log
    assert sealbox.audit_verify(tmp_path / "audit.jsonl").ok


def test_reads_what_another_gcp_client_wrote(
    tmp_path: Path, endpoint: str, prefix: str
) -> None:
    """A secret made with plain REST calls (no `current` alias, as other tools leave them)
    reads through a fresh client: its latest version is CURRENT."""
    secret_id = _secret_id(prefix, "api/token")
    _rest(endpoint, "POST", f"secrets?secretId={secret_id}", {"replication": {"automatic": {}}})
    token = secrets.token_bytes(24)
    _rest(
        endpoint,
        "POST",
        f"secrets/{secret_id}:addVersion",
        {"payload": {"data": base64.b64encode(token).decode()}},
    )
    with sealbox.Sealbox.open(_config(tmp_path, endpoint, prefix)) as client:
        got = client.get("api/token")
        assert got.equals(token) and got.version == "1"


def test_missing_and_unreachable(tmp_path: Path, endpoint: str, prefix: str) -> None:
    with sealbox.Sealbox.open(_config(tmp_path, endpoint, prefix)) as client:
        with pytest.raises(sealbox.NotFound):
            client.get("missing")
    # A closed port: the store is unavailable, which is not "the secret is missing".
    closed = "http://127.0.0.1:9"
    with sealbox.Sealbox.open(_config(tmp_path, closed, prefix)) as client:
        with pytest.raises(sealbox.Unavailable):
            client.get("anything")
    with pytest.raises(urllib.error.HTTPError) as http:
        _rest(endpoint, "GET", f"secrets/{_secret_id(prefix, 'missing')}")
    assert http.value.code == 404
    http.value.close()
