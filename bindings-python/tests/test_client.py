"""The client end to end against the memory store: put, get, versions, list, describe, delete."""

from __future__ import annotations

import json
import pickle

import pytest

import sealbox
from conftest import fresh_value


def test_put_bytearray_stores_the_value_and_wipes_the_argument(sb: sealbox.Sealbox) -> None:
    value = fresh_value()
    expected = bytes(value)
    version = sb.put("predis/prod/database/password", value)
    assert version == "1"
    assert value == bytearray(len(expected)), "the bytearray must be zeroed after put"
    assert sb.get("predis/prod/database/password").equals(expected)


@pytest.mark.parametrize("kind", ["bytes", "memoryview", "str", "memoryview-of-bytearray"])
def test_put_accepts_bytes_memoryview_and_str_without_touching_them(
    sb: sealbox.Sealbox, kind: str
) -> None:
    raw = bytes(fresh_value())
    source = bytearray(raw)
    choices: dict[str, bytes | memoryview | str] = {
        "bytes": raw,
        "memoryview": memoryview(raw),
        "str": raw.decode(),
        "memoryview-of-bytearray": memoryview(source),
    }
    value = choices[kind]
    sb.put("app/token", value)
    assert sb.get("app/token").reveal_bytes() == raw
    assert source == raw, "only a bytearray passed directly is wiped"


def test_put_non_ascii_str_is_stored_as_utf8(sb: sealbox.Sealbox) -> None:
    sb.put("app/greeting", "pässwörd-€")
    assert sb.get("app/greeting").reveal() == "pässwörd-€"


def test_put_rejects_strided_memoryview(sb: sealbox.Sealbox) -> None:
    with pytest.raises(TypeError, match="contiguous"):
        sb.put("app/x", memoryview(b"abcdef")[::2])


@pytest.mark.parametrize("bad", [None, 1, 2.5, ["a"], {"a": 1}, object()])
def test_put_rejects_other_value_types(sb: sealbox.Sealbox, bad: object) -> None:
    with pytest.raises(TypeError, match="bytes, bytearray, memoryview or str"):
        sb.put("app/x", bad)  # type: ignore[arg-type]


def test_put_with_lone_surrogate_is_invalid_input_without_echoing_it(sb: sealbox.Sealbox) -> None:
    with pytest.raises(sealbox.InvalidInput) as info:
        sb.put("app/x", "abc\ud800def")
    assert "\\ud800" not in str(info.value) and "abc" not in str(info.value)


def test_failed_put_leaves_the_bytearray_intact(sb: sealbox.Sealbox) -> None:
    value = fresh_value()
    before = bytes(value)
    with pytest.raises(sealbox.InvalidInput) as info:
        sb.put("", value)
    assert value == before, "nothing is lost on error"
    assert before.decode() not in str(info.value)


@pytest.mark.parametrize("bad", [None, 5, b"bytes-name"])
def test_names_must_be_str(sb: sealbox.Sealbox, bad: object) -> None:
    for call in (
        lambda: sb.get(bad),  # type: ignore[arg-type]
        lambda: sb.put(bad, b"x"),  # type: ignore[arg-type]
        lambda: sb.describe(bad),  # type: ignore[arg-type]
        lambda: sb.delete(bad),  # type: ignore[arg-type]
        lambda: sb.get_field(bad, "f"),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError):
            call()


def test_versions_and_stages(sb: sealbox.Sealbox) -> None:
    first = fresh_value()
    first_copy = bytes(first)
    second = fresh_value()
    second_copy = bytes(second)
    assert sb.put("app/api/key", first) == "1"
    assert sb.put("app/api/key", second) == "2"
    current = sb.get("app/api/key")
    assert (current.version, current.stage) == ("2", "CURRENT")
    assert current.equals(second_copy)
    old = sb.get("app/api/key", version="1")
    assert old.equals(first_copy)
    previous = sb.get("app/api/key", stage="PREVIOUS")
    assert previous.version == "1"
    assert previous.stages == ("PREVIOUS",)
    with pytest.raises(sealbox.InvalidInput, match="either version or stage"):
        sb.get("app/api/key", version="1", stage="CURRENT")
    with pytest.raises(sealbox.InvalidInput):
        sb.get("app/api/key", stage="not a stage!")
    with pytest.raises(sealbox.NotFound):
        sb.get("app/api/key", version="99")


def test_get_missing_secret_raises_not_found(sb: sealbox.Sealbox) -> None:
    with pytest.raises(sealbox.NotFound) as info:
        sb.get("predis/prod/missing")
    assert isinstance(info.value, LookupError)
    assert info.value.kind == "not_found"


def test_get_field_reads_one_json_field(sb: sealbox.Sealbox) -> None:
    password = fresh_value("pw").decode()
    doc = {"username": "predis", "password": password, "host": "db.internal", "port": 5432}
    sb.put("predis/prod/database", json.dumps(doc))
    field = sb.get_field("predis/prod/database", "password")
    assert field.equals(password)
    assert field.name == "predis/prod/database"
    assert field.stage == "CURRENT"
    assert sb.get_field("predis/prod/database", "port").reveal() == "5432"
    with pytest.raises(sealbox.NotFound) as info:
        sb.get_field("predis/prod/database", "missing")
    assert password not in str(info.value)


def test_get_field_on_non_json_secret_does_not_echo_the_value(sb: sealbox.Sealbox) -> None:
    value = fresh_value()
    text = bytes(value).decode()
    sb.put("app/plain", value)
    with pytest.raises(sealbox.InvalidInput) as info:
        sb.get_field("app/plain", "password")
    assert text not in str(info.value)


def test_list_describe_delete(sb: sealbox.Sealbox) -> None:
    for name in ("predis/prod/a", "predis/prod/b", "predis/staging/a", "other/x"):
        sb.put(name, fresh_value())
    assert sorted(sb.list("predis/prod/")) == ["predis/prod/a", "predis/prod/b"]
    assert len(sb.list()) == 4
    sb.put("predis/prod/a", fresh_value())
    meta = sb.describe("predis/prod/a")
    assert meta.name == "predis/prod/a"
    assert meta.current_version == "2"
    assert [v.version for v in meta.versions] == ["1", "2"]
    assert meta.versions[1].stages == ("CURRENT",)
    assert meta.created is not None and meta.created.tzinfo is not None
    assert meta.deleted is None
    assert isinstance(meta.tags, dict)
    assert "predis/prod/a" in repr(meta)
    sb.delete("predis/prod/a", force=True)
    assert sorted(sb.list("predis/prod/")) == ["predis/prod/b"]
    with pytest.raises(sealbox.NotFound):
        sb.get("predis/prod/a")


def test_principal_per_client(sb: sealbox.Sealbox) -> None:
    assert sb.principal == "svc:pytest"
    bob = sb.as_principal("user:bob")
    assert isinstance(bob, sealbox.Sealbox)
    assert bob.principal == "user:bob"
    assert sb.principal == "svc:pytest"
    # Same stores behind both.
    sb.put("app/shared", b"x")
    assert bob.get("app/shared").equals(b"x")
    with pytest.raises(sealbox.InvalidInput):
        sb.as_principal("")


def test_client_after_close_raises_value_error(sb: sealbox.Sealbox) -> None:
    sb.put("app/x", b"x")
    sb.close()
    sb.close()  # idempotent
    assert sb.closed
    assert "closed" in repr(sb)
    for call in (
        lambda: sb.get("app/x"),
        lambda: sb.put("app/x", b"y"),
        lambda: sb.list(),
        lambda: sb.describe("app/x"),
        lambda: sb.delete("app/x"),
        lambda: sb.flush_audit(),
        lambda: sb.get_field("app/x", "f"),
        lambda: sb.as_principal("user:x"),
        lambda: sb.principal,
    ):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_clone_of_closed_client_is_independent() -> None:
    with sealbox.Sealbox.memory() as a:
        b = a.as_principal("user:b")
    assert a.closed
    b.put("app/x", b"still open")
    assert b.get("app/x").equals(b"still open")
    b.close()


def test_context_manager_closes_and_propagates() -> None:
    with pytest.raises(RuntimeError):
        with sealbox.Sealbox.memory() as client:
            raise RuntimeError("boom")
    assert client.closed


def test_client_cannot_be_built_directly_or_pickled(sb: sealbox.Sealbox) -> None:
    with pytest.raises(TypeError, match="Sealbox.open"):
        sealbox.Sealbox(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(sb)


def test_flush_audit_succeeds(sb: sealbox.Sealbox) -> None:
    sb.flush_audit()


def test_open_missing_config_raises_a_sealbox_error(tmp_path: object) -> None:
    with pytest.raises(sealbox.SealboxError) as info:
        sealbox.Sealbox.open(f"{tmp_path}/missing.yaml")
    assert info.value.kind in {"io", "config", "not_found", "unsupported"}


def test_wrong_argument_types_for_constructors() -> None:
    with pytest.raises(TypeError):
        sealbox.Sealbox.open(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sealbox.Sealbox.local("x.db")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        sealbox.Sealbox.memory(principal=5)  # type: ignore[arg-type]


def test_put_with_pending_stage_leaves_current_in_place(sb: sealbox.Sealbox) -> None:
    sb.put("app/rotating", fresh_value("old"))
    pending = sb.put("app/rotating", fresh_value("new"), stages=["PENDING"])
    assert sb.get("app/rotating").version == "1"
    staged = sb.get("app/rotating", stage="PENDING")
    assert (staged.version, staged.stages) == (pending, ("PENDING",))


def test_put_compare_and_set(sb: sealbox.Sealbox) -> None:
    first = sb.put("app/cas", fresh_value(), create_only=True)
    with pytest.raises(sealbox.Conflict):
        sb.put("app/cas", fresh_value(), create_only=True)
    with pytest.raises(sealbox.Conflict):
        sb.put("app/cas", fresh_value(), expected_current="no-such-version")
    second = sb.put("app/cas", fresh_value(), expected_current=first)
    assert sb.get("app/cas").version == second != first


def test_put_idempotency_token_makes_a_retry_a_no_op(sb: sealbox.Sealbox) -> None:
    value = bytes(fresh_value())
    a = sb.put("app/retried", value, idempotency_token="req-1")
    b = sb.put("app/retried", value, idempotency_token="req-1")
    assert a == b
    assert len(sb.describe("app/retried").versions) == 1


def test_put_sets_description(sb: sealbox.Sealbox) -> None:
    sb.put("app/described", fresh_value(), description="the reporting DB", tags={"team": "data"})
    assert sb.describe("app/described").description == "the reporting DB"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"stages": []}, sealbox.InvalidInput),
        ({"stages": ["not a stage!"]}, sealbox.InvalidInput),
        ({"stages": "PENDING"}, TypeError),
        ({"expected_current": "1", "create_only": True}, sealbox.InvalidInput),
        ({"tags": {"team": 7}}, TypeError),
    ],
)
def test_bad_put_options_are_refused_and_the_bytearray_kept(
    sb: sealbox.Sealbox, kwargs: dict[str, object], error: type[Exception]
) -> None:
    value = fresh_value()
    kept = bytes(value)
    with pytest.raises(error):
        sb.put("app/refused", value, **kwargs)  # type: ignore[arg-type]
    assert value == kept
    with pytest.raises(sealbox.NotFound):
        sb.get("app/refused")


def test_metrics_count_reads_by_outcome_and_store_errors_by_kind(sb: sealbox.Sealbox) -> None:
    sb.put("app/counted", fresh_value())
    sb.get("app/counted")  # a miss: the put invalidated nothing cached yet
    sb.get("app/counted")  # a hit
    with pytest.raises(sealbox.NotFound):
        sb.get("app/absent")
    m = sb.metrics()
    assert (m["gets"], m["hits"], m["misses"], m["writes"]) == (3, 1, 1, 1)
    assert m["store_errors"] == {"not_found": 1}
    assert m["denies"] == 0 and m["stale"] == 0

    text = sb.render_prometheus()
    assert "sealbox_gets_total 3\n" in text
    assert 'sealbox_store_errors_total{kind="not_found"} 1\n' in text
    assert "sealbox_store_latency_seconds_count 2" in text
    assert "app/counted" not in text, "metrics name no secret"


def test_metrics_of_a_closed_client_raise(sb: sealbox.Sealbox) -> None:
    sb.close()
    with pytest.raises(ValueError):
        sb.metrics()
    with pytest.raises(ValueError):
        sb.render_prometheus()
