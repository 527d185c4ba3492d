"""Shared fixtures: a client over the memory store and runtime-generated values."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

import sealbox


@pytest.fixture
def sb() -> Iterator[sealbox.Sealbox]:
    """A fresh client over an in-memory store, closed after the test."""
    with sealbox.Sealbox.memory(principal="svc:pytest") as client:
        yield client


def fresh_value(prefix: str = "v") -> bytearray:
    """A value generated at run time (never a literal in this file), as a bytearray the caller
    can hand to put() for wiping."""
    return bytearray(f"{prefix}-{secrets.token_hex(16)}", "ascii")

