"""sealbox quickstart for Python.

Stores a database credential as JSON in the encrypted local vault, reads its password field
inside ``with`` (a memoryview on locked memory, wiped when the block ends) and verifies the audit
log that the calls produced.

    python examples/python/quickstart.py [WORKDIR]

WORKDIR (default: a new temporary directory) receives the config, the vault, its master key and
the audit log.
"""

from __future__ import annotations

import json
import secrets
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


def pretend_to_connect(user: str, password: memoryview) -> None:
    """Stands in for a database driver that accepts the password as bytes."""
    print(f"connecting as {user} with a {password.nbytes}-byte password (never printed)")


def main() -> None:
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sealbox-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "sealbox.yaml"
    config.write_text(CONFIG, encoding="utf-8")

    with sealbox.Sealbox.open(config) as sb:
        # In a real service the credential arrives from a file or a request; a bytearray lets
        # sealbox zero the plaintext as soon as it is stored.
        credential = bytearray(
            json.dumps(
                {
                    "username": "predis",
                    "password": secrets.token_urlsafe(24),
                    "host": "db.internal",
                    "port": 5432,
                }
            ).encode()
        )
        version = sb.put(NAME, credential)
        assert not any(credential), "put() wiped the bytearray"
        print(f"stored {NAME} version {version}")

        user = sb.get_field(NAME, "username").reveal()  # a username is not secret: copy it
        with sb.get_field(NAME, "password") as password:
            pretend_to_connect(user, password)
        # Here the password bytes are wiped and the view is released.

        print(sb.describe(NAME))
        sb.flush_audit()

    report = sealbox.audit_verify(workdir / "audit.jsonl")
    print(f"audit log: {report.lines} events, chain verified: {report.ok}")
    if not report.ok:
        raise SystemExit(f"audit log problem: {report.problem_kind} at line {report.problem_line}")


if __name__ == "__main__":
    main()
