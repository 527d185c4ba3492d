#!/usr/bin/env bash
# The whole sealbox test suite: the README's test command, and what .ci/run calls.
#
# From a fresh machine with only the toolchains, it creates a Python venv (moto's server, boto3,
# maturin, pytest, mypy), starts moto on 127.0.0.1 on a free port, makes sure the Vault server
# binary is built (scripts/vault-server.sh ensure: cached by version), runs the Rust suite (every
# crate, unit + integration + doc tests, the conformance suite against every store), the Python
# binding suite, the C/C++ suite (ASan/UBSan + valgrind) and the cache's unit tests under
# valgrind, then stops moto.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

# --- Python tools, in a venv of our own (never the system site-packages) --------------------
venv="$root/target/test-venv"
if [ ! -x "$venv/bin/python" ]; then
  step "creating $venv"
  python3 -m venv "$venv"
fi
step "installing Python test tools"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$root/scripts/requirements-test.txt"
export SEALBOX_TEST_VENV="$venv" SEALBOX_PY_VENV="$venv"
export PATH="$venv/bin:$PATH"

# --- moto, started once for the whole run -----------------------------------------------------
export SEALBOX_MOTO_VENV="$venv"
moto_env=$(bash "$root/scripts/moto.sh" env)
eval "$moto_env"
trap 'bash "$root/scripts/moto.sh" stop' EXIT
echo "moto listening on $SEALBOX_TEST_AWS_ENDPOINT"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN || true

# --- Vault, built once from the Go module proxy and cached by version (see vault-server.sh) ---
step "Vault server binary"
vault_started=$(date +%s)
SEALBOX_VAULT_BIN=$(bash "$root/scripts/vault-server.sh" ensure)
export SEALBOX_VAULT_BIN
echo "Vault binary $SEALBOX_VAULT_BIN ready in $(( $(date +%s) - vault_started ))s"

# --- Rust ---------------------------------------------------------------------------------------
step "cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast

# --- Python binding -------------------------------------------------------------------------------
step "Python binding"
bash "$root/scripts/test-python.sh"

# --- C ABI and C++ wrapper ------------------------------------------------------------------------
step "C ABI and C++ wrapper"
bash "$root/scripts/test-c.sh"

# --- The cache's lock-free value slots under valgrind (after test-c.sh, which installs it) -----
# Hits read cached values without a lock, and refreshes retire replaced values through the
# index's epoch collector (core/src/cache/slot.rs). A value read after its release goes
# unnoticed in a plain run; memcheck reports it.
step "cache unit tests under valgrind memcheck"
cache_tests=$(cargo test -p sealbox --lib --locked --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sealbox"
            and m["profile"]["test"] and m.get("executable")):
        print(m["executable"])')
valgrind --quiet --error-exitcode=99 "$cache_tests" cache:: --test-threads=1

step "all suites passed"
