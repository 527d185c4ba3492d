"""Exceptions: one hierarchy, mapped from the core's error kinds, never holding a value."""

from __future__ import annotations

import pickle

import pytest

import sealbox

SUBCLASSES = [
    sealbox.NotFound,
    sealbox.AccessDenied,
    sealbox.Unavailable,
    sealbox.IntegrityError,
    sealbox.ConfigError,
    sealbox.InvalidInput,
    sealbox.Conflict,
    sealbox.Unsupported,
    sealbox.KeyExhausted,
]


@pytest.mark.parametrize("cls", SUBCLASSES)
def test_every_error_is_a_sealbox_error(cls: type[sealbox.SealboxError]) -> None:
    assert issubclass(cls, sealbox.SealboxError)
    err = cls("message", "kind_name", "req-1")
    assert str(err) == "message"
    assert (err.kind, err.request_id) == ("kind_name", "req-1")


@pytest.mark.parametrize("cls", SUBCLASSES)
def test_errors_survive_pickling(cls: type[sealbox.SealboxError]) -> None:
    err = pickle.loads(pickle.dumps(cls("m", "k", None)))
    assert type(err) is cls and err.kind == "k" and str(err) == "m"
    both = pickle.loads(pickle.dumps(cls("m", "k", "audit-1", "aws-1")))
    assert (both.request_id, both.provider_request_id) == ("audit-1", "aws-1")


def test_memory_lock_warning_is_a_runtime_warning() -> None:
    assert issubclass(sealbox.MemoryLockWarning, RuntimeWarning)


def test_python_friendly_bases() -> None:
    assert issubclass(sealbox.NotFound, LookupError)
    assert issubclass(sealbox.InvalidInput, ValueError)
    assert issubclass(sealbox.AccessDenied, PermissionError)
    assert issubclass(sealbox.Unsupported, NotImplementedError)


def test_core_errors_arrive_with_kind(sb: sealbox.Sealbox) -> None:
    with pytest.raises(sealbox.NotFound) as nf:
        sb.describe("app/none")
    assert nf.value.kind == "not_found"
    with pytest.raises(sealbox.InvalidInput) as bad:
        sb.get("/leading/slash")
    assert bad.value.kind == "invalid_input"
    with pytest.raises(sealbox.SealboxError) as unopenable:
        sealbox.Sealbox.local("/nonexistent/dir/vault", key_file="/nonexistent/dir/master.key")
    assert unopenable.value.kind in {"io", "not_found", "config"}
    assert "/nonexistent/dir" in str(unopenable.value)
