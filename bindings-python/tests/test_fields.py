"""get_fields: several fields of one JSON credential, read together, each in locked memory of its
own, usable in one `with` block and wiped at its end; errors never show a value."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle

import pytest

import sealbox
from conftest import fresh_value

NAME = "predis/prod/aws"


def store_credential(sb: sealbox.Sealbox) -> dict[str, str]:
    """Stores an AWS-style credential with run-time values and returns them (test-only copies)."""
    values = {
        "access_key_id": fresh_value("AKIA").decode(),
        "secret_access_key": fresh_value("sk").decode(),
        "session_token": fresh_value("tok").decode(),
    }
    document = {**values, "port": 9440}
    sb.put(NAME, bytearray(json.dumps(document).encode()))
    return values


def test_fields_are_views_inside_the_block_and_wiped_after(sb: sealbox.Sealbox) -> None:
    values = store_credential(sb)
    creds = sb.get_fields(NAME, ["access_key_id", "secret_access_key", "session_token", "port"])
    assert creds.fields == ("access_key_id", "secret_access_key", "session_token", "port")
    assert creds.name == NAME and len(creds) == 4 and "port" in creds and list(creds) == list(creds.fields)
    with creds:
        key_id, secret, token = creds.access_key_id, creds.secret_access_key, creds["session_token"]
        assert isinstance(key_id, memoryview) and key_id.readonly
        assert bytes(key_id) == values["access_key_id"].encode()
        assert bytes(secret) == values["secret_access_key"].encode()
        assert bytes(token) == values["session_token"].encode()
        assert bytes(creds.port) == b"9440"
        assert all(creds.secret(f).locked for f in creds)
    assert creds.closed
    for view in (key_id, secret, token):
        with pytest.raises(ValueError):
            bytes(view)  # released at the block's end
    with pytest.raises(ValueError):
        creds.access_key_id
    assert all(creds.secret(f).closed for f in creds.fields)


def test_one_read_one_version_and_one_metric_tick(sb: sealbox.Sealbox) -> None:
    store_credential(sb)
    sb.get(NAME).close()  # now cached
    before = sb.metrics()
    with sb.get_fields(NAME, ["access_key_id", "session_token"]) as creds:
        assert creds.version == sb.describe(NAME).current_version
        assert {creds.secret(f).version for f in creds} == {creds.version}
    after = sb.metrics()
    assert after["gets"] == before["gets"] + 1  # type: ignore[operator]
    assert after["hits"] == before["hits"] + 1  # type: ignore[operator]


def test_fields_are_only_readable_inside_the_block(sb: sealbox.Sealbox) -> None:
    store_credential(sb)
    creds = sb.get_fields(NAME, ["access_key_id"])
    with pytest.raises(ValueError, match="with"):
        creds.access_key_id
    with pytest.raises(ValueError, match="with"):
        creds["access_key_id"]
    with creds:
        with pytest.raises(KeyError, match="region"):
            creds["region"]
        with pytest.raises(AttributeError, match="region"):
            creds.region
        with pytest.raises(ValueError):
            creds.__enter__()  # not twice
    with pytest.raises(ValueError, match="closed"):
        creds.__enter__()


def test_repr_shows_names_never_values_and_copies_are_refused(sb: sealbox.Sealbox) -> None:
    values = store_credential(sb)
    with sb.get_fields(NAME, ["secret_access_key", "session_token"]) as creds:
        shown = repr(creds) + str(creds)
        assert "secret_access_key" in shown and "[REDACTED]" in shown
        assert not any(v in shown for v in values.values())
        with pytest.raises(TypeError):
            pickle.dumps(creds)
        with pytest.raises(TypeError):
            copy.copy(creds)
        with pytest.raises(TypeError):
            copy.deepcopy(creds)
    assert "closed" in repr(creds)


def test_a_missing_field_is_not_found_naming_it_without_any_value(sb: sealbox.Sealbox) -> None:
    values = store_credential(sb)
    with pytest.raises(sealbox.NotFound) as missing:
        sb.get_fields(NAME, ["access_key_id", "region", "secret_access_key"])
    assert "region" in str(missing.value)
    assert not any(v in str(missing.value) for v in values.values())


def test_a_secret_that_is_not_json_is_invalid_input_without_its_value(sb: sealbox.Sealbox) -> None:
    plain = fresh_value("plain")
    text = plain.decode()
    sb.put("predis/prod/plain", plain)
    with pytest.raises(sealbox.InvalidInput) as not_json:
        sb.get_fields("predis/prod/plain", ["password"])
    assert text not in str(not_json.value) and "JSON" in str(not_json.value)
    nested = bytearray(json.dumps({"password": {"inner": text}}).encode())
    sb.put("predis/prod/nested", nested)
    with pytest.raises(sealbox.InvalidInput) as not_scalar:
        sb.get_fields("predis/prod/nested", ["password"])
    assert text not in str(not_scalar.value) and "password" in str(not_scalar.value)


def test_bad_field_lists_are_refused(sb: sealbox.Sealbox) -> None:
    store_credential(sb)
    with pytest.raises(TypeError):
        sb.get_fields(NAME, "access_key_id")
    with pytest.raises(sealbox.InvalidInput):
        sb.get_fields(NAME, [])
    with pytest.raises(sealbox.InvalidInput, match="twice"):
        sb.get_fields(NAME, ["port", "port"])


def test_aget_fields(sb: sealbox.Sealbox) -> None:
    values = store_credential(sb)

    async def read() -> bytes:
        async with asyncio.timeout(30):
            creds = await sb.aget_fields(NAME, ["session_token"])
        with creds:
            return bytes(creds.session_token)

    assert asyncio.run(read()) == values["session_token"].encode()
