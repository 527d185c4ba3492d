"""The Secret object: never shown, viewed without copies inside `with`, wiped on exit."""

from __future__ import annotations

import copy
import pickle

import pytest

import sealbox
from conftest import fresh_value


def stored(sb: sealbox.Sealbox, name: str = "predis/prod/database/password") -> tuple[sealbox.Secret, bytes]:
    value = fresh_value()
    expected = bytes(value)
    sb.put(name, value)
    return sb.get(name), expected


def test_repr_and_str_never_show_the_value(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}"):
        assert expected.decode() not in text
        assert "[REDACTED]" in text
        assert "predis/prod/database/password" in text
    secret.close()
    assert "closed" in repr(secret)


def test_metadata_properties(sb: sealbox.Sealbox) -> None:
    secret, _ = stored(sb)
    assert secret.name == "predis/prod/database/password"
    assert secret.version == "1"
    assert secret.stage == "CURRENT"
    assert secret.stages == ("CURRENT",)
    assert secret.closed is False
    secret.close()
    # Metadata is not secret and stays readable after close.
    assert secret.name == "predis/prod/database/password"
    assert secret.closed is True


def test_with_yields_a_read_only_memoryview_on_the_value(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    with secret as view:
        assert isinstance(view, memoryview)
        assert view.readonly
        assert view.nbytes == len(expected)
        assert view.format == "B"
        assert view == expected
        with pytest.raises(TypeError):
            view[0] = 0
    assert secret.closed


def test_view_is_released_when_the_block_exits(sb: sealbox.Sealbox) -> None:
    secret, _ = stored(sb)
    with secret as view:
        pass
    with pytest.raises(ValueError, match="released"):
        view[0]
    with pytest.raises(ValueError):
        bytes(view)


def test_view_is_released_by_close_inside_the_block(sb: sealbox.Sealbox) -> None:
    secret, _ = stored(sb)
    with secret as view:
        secret.close()
        with pytest.raises(ValueError, match="released"):
            view.tobytes()


def test_derived_views_read_zeros_after_exit_never_freed_memory(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    with secret as view:
        derived = view[2:10]
        nested = memoryview(view)
        assert derived == expected[2:10]
    # The block's own view is gone; views derived from it stay valid objects but the bytes
    # under them were wiped in place.
    assert bytes(derived) == bytes(8)
    assert bytes(nested) == bytes(len(expected))
    del derived, nested


def test_buffer_is_not_exposed_by_the_secret_itself(sb: sealbox.Sealbox) -> None:
    secret, _ = stored(sb)
    with pytest.raises(TypeError):
        bytes(secret)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        memoryview(secret)  # type: ignore[arg-type]


def test_view_refuses_writable_exports(sb: sealbox.Sealbox) -> None:
    import ctypes

    secret, _ = stored(sb)
    with secret as view:
        exporter = view.obj
        with pytest.raises((TypeError, BufferError)):
            (ctypes.c_char * view.nbytes).from_buffer(exporter)


def test_reveal_and_reveal_bytes_are_explicit_copies(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    text = secret.reveal()
    raw = secret.reveal_bytes()
    assert text == expected.decode()
    assert raw == expected
    secret.close()
    # The copies belong to the caller and survive the wipe.
    assert raw == expected


def test_reveal_of_binary_value_raises_invalid_input(sb: sealbox.Sealbox) -> None:
    sb.put("app/binary", b"\xff\xfe\x00")
    secret = sb.get("app/binary")
    with pytest.raises(sealbox.InvalidInput) as info:
        secret.reveal()
    assert "\\xff" not in str(info.value)
    assert secret.reveal_bytes() == b"\xff\xfe\x00"


def test_equals_in_constant_time_against_every_accepted_type(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    same, _ = stored(sb, "predis/prod/database/password")
    other, _ = stored(sb, "predis/prod/database/other")
    assert secret.equals(secret)
    assert secret.equals(expected)
    assert secret.equals(bytearray(expected))
    assert secret.equals(memoryview(expected))
    assert secret.equals(expected.decode())
    assert not secret.equals(other)
    assert not secret.equals(expected[:-1])
    assert not secret.equals(b"")
    assert same.reveal_bytes() != expected  # the second put made a new value
    assert not secret.equals(same)


@pytest.mark.parametrize("bad", [None, 42, 1.5, ["x"], object()])
def test_equals_rejects_other_types(sb: sealbox.Sealbox, bad: object) -> None:
    secret, _ = stored(sb)
    with pytest.raises(TypeError, match="equals"):
        secret.equals(bad)  # type: ignore[arg-type]


def test_pickling_and_copying_are_refused(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    for attempt in (
        lambda: pickle.dumps(secret),
        lambda: pickle.dumps(secret, protocol=0),
        lambda: copy.copy(secret),
        lambda: copy.deepcopy(secret),
        lambda: copy.deepcopy({"s": secret}),
    ):
        with pytest.raises(TypeError, match="cannot be pickled or copied") as info:
            attempt()
        assert expected.decode() not in str(info.value)


def test_use_after_close_raises_and_never_crashes(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    secret.close()
    secret.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        secret.reveal()
    with pytest.raises(ValueError, match="closed"):
        secret.reveal_bytes()
    with pytest.raises(ValueError, match="closed"):
        secret.equals(expected)
    with pytest.raises(ValueError, match="closed"):
        with secret:
            pass
    other, _ = stored(sb, "app/other")
    with pytest.raises(ValueError, match="closed"):
        other.equals(secret)
    assert secret.locked is False


def test_exit_does_not_swallow_exceptions(sb: sealbox.Sealbox) -> None:
    secret, _ = stored(sb)
    with pytest.raises(RuntimeError, match="boom"):
        with secret:
            raise RuntimeError("boom")
    assert secret.closed


def test_secret_outlives_its_client(sb: sealbox.Sealbox) -> None:
    secret, expected = stored(sb)
    sb.close()
    with secret as view:
        assert view == expected


def test_subclassing_secret_is_not_allowed() -> None:
    with pytest.raises(TypeError):

        class Leaky(sealbox.Secret):  # type: ignore[misc]
            pass


def test_secret_cannot_be_built_from_python() -> None:
    with pytest.raises(TypeError):
        sealbox.Secret()
