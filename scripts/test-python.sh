#!/usr/bin/env bash
# Builds the sealbox Python wheel (abi3, CPython >= 3.11) in a venv, installs it, and checks it:
# stubtest (stubs vs the compiled module), mypy --strict (package, tests, example, bench) and
# pytest (warnings are errors, xfail is strict). The AWS tests use a moto server started with
# scripts/moto.sh (its own venv), or the one SEALBOX_TEST_AWS_ENDPOINT names; the GCP tests start
# the local Secret Manager (crate sealbox-gcp-local, built here).
#
# Needs only python3 >= 3.11 with venv, and the Rust toolchain. The venv lives in
# target/py-venv (override with SEALBOX_PY_VENV); the wheel is built with the workspace's dev
# profile into the workspace target/ dir, so it reuses what `cargo test` already compiled.
# Extra arguments go to pytest, e.g. `scripts/test-python.sh -k wipe`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEALBOX_PY_VENV:-$root/target/py-venv}"
python="${PYTHON:-python3}"
wheels="$root/target/wheels/python"

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sealbox needs CPython >= 3.11")'

if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating venv $venv"
    "$python" -m venv "$venv"
fi
echo "==> installing build and test tools"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'maturin>=1.9,<2' 'pytest>=8' 'mypy>=1.18'

echo "==> building the wheel (cargo dev profile)"
rm -rf "$wheels"
(cd "$root/bindings-python" &&
    "$venv/bin/maturin" build --profile dev --interpreter "$venv/bin/python" --out "$wheels")
shopt -s nullglob
built=("$wheels"/sealbox-*-abi3-*.whl)
if [[ ${#built[@]} -ne 1 ]]; then
    echo "expected exactly one abi3 wheel in $wheels, found ${#built[@]}" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "${built[0]}"

# The AWS tests run against moto's server: start one unless an endpoint is given already
# (SEALBOX_TEST_AWS_ENDPOINT) or SEALBOX_PY_NO_MOTO=1; stop only the one started here.
if [[ -z "${SEALBOX_TEST_AWS_ENDPOINT:-}" && -z "${SEALBOX_PY_NO_MOTO:-}" && -x "$root/scripts/moto.sh" ]]; then
    echo "==> starting moto for the AWS tests"
    "$root/scripts/moto.sh" install
    moto_port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    SEALBOX_TEST_AWS_ENDPOINT="$("$root/scripts/moto.sh" start "$moto_port")"
    export SEALBOX_TEST_AWS_ENDPOINT
    trap '"$root/scripts/moto.sh" stop "$moto_port" >/dev/null 2>&1 || true' EXIT
fi

# The GCP tests run against the local Secret Manager, which tests/test_gcp.py starts and stops
# from this binary.
echo "==> building the local GCP Secret Manager"
(cd "$root" && cargo build --quiet -p sealbox-gcp-local --bin local-secret-manager)
export SEALBOX_TEST_GCP_SERVER="${CARGO_TARGET_DIR:-$root/target}/debug/local-secret-manager"

cd "$root/bindings-python"
echo "==> stubtest"
"$venv/bin/python" -m mypy.stubtest sealbox
echo "==> mypy --strict"
"$venv/bin/python" -m mypy
echo "==> pytest"
# Imports resolve to the installed wheel: python/ is not on sys.path from here.
"$venv/bin/python" -m pytest -W error -o xfail_strict=true -p no:cacheprovider "$@"
