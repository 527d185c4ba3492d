"""The API end to end against AWS Secrets Manager as served by moto.

Runs when SEALBOX_TEST_AWS_ENDPOINT names a moto server (`scripts/test-python.sh` starts one
with `scripts/moto.sh`); otherwise every test here is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import sealbox
from conftest import fresh_value

ENDPOINT = os.environ.get("SEALBOX_TEST_AWS_ENDPOINT")

pytestmark = pytest.mark.skipif(
    not ENDPOINT, reason="SEALBOX_TEST_AWS_ENDPOINT is not set (scripts/moto.sh env starts moto)"
)


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sealbox.Sealbox]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = tmp_path / "sealbox.yaml"
    config.write_text(
        f"""
secrets:
  provider: aws
  config: {{region: us-east-1, endpoint_url: "{ENDPOINT}"}}
principal: svc:pytest-aws
audit: {{path: ./audit.jsonl, mode: strict}}
""",
        encoding="utf-8",
    )
    with sealbox.Sealbox.open(config) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    """moto's state is shared between tests: each test works under its own prefix."""
    return f"pytest/{secrets.token_hex(6)}"


def test_round_trip_on_moto(aws: sealbox.Sealbox, prefix: str, tmp_path: Path) -> None:
    name = f"{prefix}/database/password"
    value = fresh_value()
    expected = bytes(value)
    first = aws.put(name, value)
    assert value == bytearray(len(expected))
    with aws.get(name) as view:
        assert view == expected
    second = aws.put(name, b"rotated")
    assert second != first
    assert aws.get(name, stage="PREVIOUS").equals(expected)
    assert aws.get(name, version=first).equals(expected)
    assert name in aws.list(prefix)
    meta = aws.describe(name)
    assert meta.current_version == second
    aws.delete(name, force=True)
    with pytest.raises(sealbox.NotFound):
        aws.get(name)
    aws.flush_audit()
    log = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert expected.decode() not in log and "rotated" not in log
    assert sealbox.audit_verify(tmp_path / "audit.jsonl").ok


def test_json_field_on_moto(aws: sealbox.Sealbox, prefix: str) -> None:
    name = f"{prefix}/database"
    aws.put(name, json.dumps({"username": "predis", "password": "pw-7", "host": "db", "port": 5432}))
    with aws.get_field(name, "password") as view:
        assert view.tobytes() == b"pw-7"


def test_async_on_moto(aws: sealbox.Sealbox, prefix: str) -> None:
    async def scenario() -> None:
        name = f"{prefix}/token"
        await aws.aput(name, "tok-1")
        got = await asyncio.gather(*(aws.aget(name) for _ in range(8)))
        assert all(s.equals("tok-1") for s in got)

    asyncio.run(scenario())


def test_missing_secret_on_moto(aws: sealbox.Sealbox, prefix: str) -> None:
    with pytest.raises(sealbox.NotFound) as info:
        aws.get(f"{prefix}/missing")
    assert info.value.kind == "not_found"
