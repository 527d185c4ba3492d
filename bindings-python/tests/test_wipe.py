"""The wipe is real: after `with` exits no copy of a runtime-generated value is left in the
process, except copies the test makes itself with reveal()."""

from __future__ import annotations

import sys

import pytest

import sealbox
from memscan import assemble, count_copies, split_value

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/mem")


def test_scanner_finds_a_value_held_in_ordinary_memory() -> None:
    head, tail = split_value()
    held = assemble(head, tail)
    assert count_copies(head, tail) >= 1
    held[:] = bytes(len(held))
    assert count_copies(head, tail) == 0


def test_no_copy_survives_the_with_block() -> None:
    head, tail = split_value()
    with sealbox.Sealbox.memory() as sb:
        sb.put("predis/prod/database/password", assemble(head, tail))  # the bytearray is wiped
        secret = sb.get("predis/prod/database/password")
        # Remove the store's own copy so the Secret holds the only one.
        sb.delete("predis/prod/database/password", force=True)
    assert count_copies(head, tail) >= 1, "the live secret must be visible to the scanner"
    with secret as view:
        assert view[0] == head[0]
        assert view.nbytes == len(head) + len(tail)
    assert count_copies(head, tail) == 0


def test_no_copy_survives_close_even_with_a_derived_view_alive() -> None:
    head, tail = split_value()
    with sealbox.Sealbox.memory() as sb:
        sb.put("app/token", assemble(head, tail))
        secret = sb.get("app/token")
        sb.delete("app/token", force=True)
    with secret as view:
        derived = view[:]
    assert count_copies(head, tail) == 0
    assert derived.nbytes == len(head) + len(tail)
    derived.release()


def test_reveal_is_the_copy_the_caller_asked_for() -> None:
    head, tail = split_value()
    with sealbox.Sealbox.memory() as sb:
        sb.put("app/token", assemble(head, tail))
        secret = sb.get("app/token")
        sb.delete("app/token", force=True)
    revealed = secret.reveal_bytes()
    secret.close()
    assert count_copies(head, tail) >= 1, "the revealed bytes are the caller's copy"
    assert revealed[: len(head)] == head
