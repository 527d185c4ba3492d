"""Counts copies of a value in this process's memory by reading /proc/self/mem.

The value is never materialised by the scanner: callers keep it as two halves (`head`, `tail`)
in separate objects and the scanner counts places where `head` is directly followed by `tail`.
Reads go into one preallocated buffer that is zeroed afterwards, so a scan leaves no copy of
what it read for a later scan to find.
"""

from __future__ import annotations

import secrets

_CHUNK = 4 << 20
_SKIP = {"[vvar]", "[vvar_vclock]", "[vsyscall]"}


def split_value() -> tuple[bytes, bytes]:
    """A runtime-generated value as two independent halves (64 hex characters in all)."""
    return secrets.token_hex(16).encode(), secrets.token_hex(16).encode()


def assemble(head: bytes, tail: bytes) -> bytearray:
    """The whole value in a bytearray, built in place (no intermediate joined copy)."""
    out = bytearray(len(head) + len(tail))
    out[: len(head)] = head
    out[len(head) :] = tail
    return out


def count_copies(head: bytes, tail: bytes) -> int:
    """How many times `head + tail` occurs in this process's readable memory."""
    total = len(head) + len(tail)
    buf = bytearray(_CHUNK + total)
    view = memoryview(buf)
    found = 0
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        regions = maps.read().splitlines()
    try:
        with open("/proc/self/mem", "rb", buffering=0) as mem:
            for line in regions:
                fields = line.split(maxsplit=5)
                start_s, end_s = fields[0].split("-")
                perms = fields[1]
                path = fields[5].strip() if len(fields) > 5 else ""
                if "r" not in perms or path in _SKIP:
                    continue
                start, end = int(start_s, 16), int(end_s, 16)
                pos = start
                while pos < end:
                    size = min(_CHUNK + total - 1, end - pos)
                    try:
                        mem.seek(pos)
                        got = mem.readinto(view[:size])
                    except OSError:
                        break
                    if not got:
                        break
                    i = buf.find(head, 0, got)
                    while i != -1:
                        if i < _CHUNK and i + total <= got and view[i + len(head) : i + total] == tail:
                            found += 1
                        i = buf.find(head, i + 1, got)
                    pos += _CHUNK
    finally:
        buf[:] = bytes(len(buf))
        view.release()
    return found
