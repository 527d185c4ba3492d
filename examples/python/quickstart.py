"""sealbox quickstart for Python.

Stores a database credential as JSON in the encrypted local vault without ever holding it in a
``str`` or ``bytes`` (objects Python cannot wipe), reads its fields together inside one ``with``
block (memoryviews on locked memory, wiped when the block ends), reads a single secret the same
way, and verifies the audit log that the calls produced.

    python examples/python/quickstart.py [WORKDIR]

WORKDIR (default: a new temporary directory) receives the config, the vault, its master key and
the audit log.

The rule this example follows: a secret only ever lives in a ``bytearray`` you wipe (``put``
wipes the one it is given) or in sealbox's locked memory. ``str`` and ``bytes`` are immutable:
every one made from a secret stays in memory, unwiped, until the allocator reuses it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sealbox

CONFIG = """\
secrets:
  provider: local
  config: {path: ./vault, key_file: ./master.key}   # the key file is created (0600) if missing
principal: svc:quickstart
audit: {path: ./audit.jsonl, mode: strict}
"""

NAME = "predis/prod/database"
TOKEN = "predis/prod/api/token"

# Characters of generated passwords: 64 of them, so a random byte picks one without bias.
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def random_password(length: int) -> bytearray:
    """A random password read straight into a bytearray (``secrets.token_urlsafe`` would return
    a ``str``, which cannot be wiped)."""
    password = bytearray(length)
    with open("/dev/urandom", "rb", buffering=0) as urandom:
        if urandom.readinto(password) != length:
            raise OSError("short read from /dev/urandom")
    for i, byte in enumerate(password):
        password[i] = ALPHABET[byte % len(ALPHABET)]
    return password


def json_credential(public: bytes, password: bytearray) -> bytearray:
    """``public`` (the non-secret JSON members, ending in a comma) plus ``"password": ...`` in one
    bytearray of exactly the right size: appending would let the bytearray reallocate and leave
    an unwiped copy of the password behind. Wipes ``password``."""
    head, tail = b'{' + public + b'"password":"', b'"}'
    document = bytearray(len(head) + len(password) + len(tail))
    view = memoryview(document)
    view[: len(head)] = head
    view[len(head) : len(head) + len(password)] = password
    view[len(head) + len(password) :] = tail
    view.release()
    password[:] = bytes(len(password))  # same size: overwritten in place
    return document


def pretend_to_connect(host: memoryview, port: memoryview, user: memoryview, password: memoryview) -> None:
    """Stands in for a database driver that accepts its settings as bytes."""
    print(
        f"connecting to a {host.nbytes}-byte host on a {port.nbytes}-digit port as a"
        f" {user.nbytes}-byte user with a {password.nbytes}-byte password (never printed)"
    )


def main() -> None:
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sealbox-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "sealbox.yaml"
    config.write_text(CONFIG, encoding="utf-8")

    with sealbox.Sealbox.open(config) as sb:
        # In a real service the credential arrives from a file or a request: read it into a
        # bytearray (file.readinto), never into a str.
        credential = json_credential(
            b'"username":"predis","host":"db.internal","port":5432,', random_password(24)
        )
        version = sb.put(NAME, credential)
        assert not any(credential), "put() wiped the bytearray"
        print(f"stored {NAME} version {version}")

        token = random_password(32)
        sb.put(TOKEN, token)  # wiped too
        assert not any(token)

        # A structured credential: one read, each field in locked memory of its own.
        with sb.get_fields(NAME, ["host", "port", "username", "password"]) as db:
            pretend_to_connect(db.host, db.port, db.username, db["password"])
        # Here every field is wiped and every view released.

        # A single secret: a view on its locked bytes for the length of the block.
        with sb.get(TOKEN) as view:
            print(f"API token: {view.nbytes} bytes (never printed)")

        print(sb.describe(NAME))
        sb.flush_audit()

    # The chain key is kept in the vault, wrapped by its master key: verify through the config.
    report = sealbox.audit_verify(workdir / "audit.jsonl", config=config)
    print(f"audit log: {report.lines} events, chain verified: {report.ok}")
    if not report.ok:
        raise SystemExit(f"audit log problem: {report.problem_kind} at line {report.problem_line}")


if __name__ == "__main__":
    main()
