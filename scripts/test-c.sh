#!/usr/bin/env bash
# Builds and tests sealbox's C ABI and C++ wrapper (bindings-c/), from a machine that has only
# the Rust toolchain: installs gcc, g++, cmake, GoogleTest, valgrind and pkg-config from Debian
# when missing (as root), then
#   1. checks include/sealbox.h against a fresh run of the pinned cbindgen,
#   2. builds libsealbox with the workspace target/ and dev profile and installs it, with its
#      CMake package and pkg-config file, into target/sealbox-c/prefix,
#   3. builds the C and C++ tests against that package with -Wall -Wextra -Wpedantic -Werror
#      under AddressSanitizer + UndefinedBehaviorSanitizer and runs them (the C test's
#      `provider: gcp` case against the local GCP Secret Manager started here, from the crate
#      sealbox-gcp-local, and stopped at the end),
#   4. runs them again under valgrind memcheck (zero errors, zero definite leaks),
#   5. builds the C example with pkg-config and the C++ example with find_package(sealbox),
#      and runs both against a throwaway config and local vault.
# Ends with "test-c: N passed, N failed" and exits non-zero on any failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET/sealbox-c
PREFIX=$WORK/prefix
CBINDGEN_VERSION=0.29.4
CBINDGEN=$TARGET/tools/cbindgen-$CBINDGEN_VERSION/bin/cbindgen
JOBS=${SEALBOX_C_JOBS:-2}

passed=0
failed=0
skipped=0
step() { echo; echo "==> $*"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAILED: $*" >&2; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*"; }
gcp_pid=
stop_gcp() {
  # Only the server this script started, by its pid.
  if [ -n "$gcp_pid" ]; then
    kill "$gcp_pid" 2>/dev/null
    wait "$gcp_pid" 2>/dev/null
    gcp_pid=
  fi
}
trap stop_gcp EXIT
finish() {
  stop_gcp
  echo
  echo "test-c: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
  exit $?
}

# ---- 0. tools ----
step "tools"
missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v g++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v pkg-config >/dev/null || missing+=(pkg-config)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    bad "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
    finish
  fi
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { bad "apt-get install ${missing[*]}"; finish; }
fi
mkdir -p "$WORK"

# ---- 1. header matches a fresh generation ----
step "header: include/sealbox.h vs cbindgen $CBINDGEN_VERSION"
if [ ! -x "$CBINDGEN" ]; then
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked \
    --root "$TARGET/tools/cbindgen-$CBINDGEN_VERSION" --quiet || { bad "installing cbindgen"; finish; }
fi
if (cd "$ROOT" && "$CBINDGEN" --quiet --config bindings-c/cbindgen.toml --crate sealbox-c \
      --output "$WORK/sealbox.h.fresh" bindings-c) &&
   diff -u "$ROOT/bindings-c/include/sealbox.h" "$WORK/sealbox.h.fresh"; then
  ok "header is up to date"
else
  bad "include/sealbox.h differs from a fresh generation; run: $CBINDGEN --config bindings-c/cbindgen.toml --crate sealbox-c --output bindings-c/include/sealbox.h bindings-c"
fi

# ---- 2. build and install the library ----
step "build and install libsealbox into $PREFIX"
rm -rf "$PREFIX"
if cmake -S "$ROOT/bindings-c" -B "$WORK/build-lib" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
      -DSEALBOX_CARGO_TARGET_DIR="$TARGET" >/dev/null &&
   cmake --build "$WORK/build-lib" &&
   cmake --install "$WORK/build-lib" >/dev/null; then
  ok "libsealbox installed"
else
  bad "building or installing libsealbox"
  finish
fi

# ---- 2b. the local GCP Secret Manager, for the C test's `provider: gcp` config ----
step "local GCP Secret Manager (crate sealbox-gcp-local)"
if (cd "$ROOT" && cargo build --quiet -p sealbox-gcp-local --bin local-secret-manager); then
  "$TARGET/debug/local-secret-manager" >"$WORK/gcp-server.out" 2>"$WORK/gcp-server.log" &
  gcp_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$WORK/gcp-server.out" ] && break
    kill -0 "$gcp_pid" 2>/dev/null || break
    sleep 0.1
  done
  SEALBOX_TEST_GCP_ENDPOINT=$(head -n 1 "$WORK/gcp-server.out")
  case $SEALBOX_TEST_GCP_ENDPOINT in
    http://127.0.0.1:*)
      export SEALBOX_TEST_GCP_ENDPOINT
      ok "local Secret Manager at $SEALBOX_TEST_GCP_ENDPOINT"
      ;;
    *)
      cat "$WORK/gcp-server.log" >&2
      bad "the local Secret Manager did not start"
      ;;
  esac
else
  bad "building the local Secret Manager"
fi

# ---- 3. tests under ASan + UBSan ----
step "C and C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if cmake -S "$ROOT/bindings-c/tests" -B "$WORK/build-asan" -DCMAKE_PREFIX_PATH="$PREFIX" \
      -DSEALBOX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
   cmake --build "$WORK/build-asan" -j "$JOBS" >/dev/null &&
   (cd "$WORK/build-asan" && ctest --output-on-failure); then
  ok "sanitizer run"
else
  bad "tests under ASan/UBSan"
fi
unset ASAN_OPTIONS UBSAN_OPTIONS

# ---- 4. tests under valgrind ----
step "C and C++ tests under valgrind memcheck"
if cmake -S "$ROOT/bindings-c/tests" -B "$WORK/build-plain" -DCMAKE_PREFIX_PATH="$PREFIX" \
      -DSEALBOX_SANITIZE=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
   cmake --build "$WORK/build-plain" -j "$JOBS" >/dev/null; then
  for t in test_sealbox_c test_sealbox_cpp17 test_sealbox_cpp20; do
    if valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
         --suppressions="$ROOT/bindings-c/tests/valgrind.supp" \
         --errors-for-leak-kinds=definite "$WORK/build-plain/$t" >"$WORK/valgrind-$t.log" 2>&1; then
      ok "valgrind $t: no errors, no definite leaks"
    else
      cat "$WORK/valgrind-$t.log" >&2
      bad "valgrind $t"
    fi
  done
else
  bad "building the tests for valgrind"
fi

# ---- 5. examples ----
step "examples: C via pkg-config, C++ via find_package(sealbox)"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
EX=$WORK/examples
mkdir -p "$EX"
# shellcheck disable=SC2046 # pkg-config output is a list of flags
if gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$EX/predis_service_c" \
     "$ROOT/examples/c/predis_service.c" $(pkg-config --cflags --libs sealbox) \
     -Wl,-rpath,"$PREFIX/lib" &&
   gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$EX/provision_c" \
     "$ROOT/examples/c/provision.c" $(pkg-config --cflags --libs sealbox) \
     -Wl,-rpath,"$PREFIX/lib"; then
  ok "C example builds with pkg-config"
else
  bad "building the C example"
fi
if cmake -S "$ROOT/examples/cpp" -B "$EX/build-cpp" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null &&
   cmake --build "$EX/build-cpp" >/dev/null; then
  ok "C++ example builds with find_package(sealbox)"
else
  bad "building the C++ example"
fi

run_example() {
  local what=$1
  shift
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  echo "$out"
  case $rc in
    0) ok "$what ran" ;;
    77) skip "$what: this build lacks a feature the example needs (see above)" ;;
    *) bad "$what exited with $rc" ;;
  esac
  return $rc
}

DEMO=$(mktemp -d "$WORK/demo.XXXXXX")
"$ROOT/examples/c/make-demo-config.sh" "$DEMO" >/dev/null
run_example "provisioning" "$EX/provision_c" "$DEMO/sealbox.yaml"
case $? in
  0)
    run_example "C example" "$EX/predis_service_c" "$DEMO/sealbox.yaml"
    run_example "C++ example" "$EX/build-cpp/predis_service_cpp" "$DEMO/sealbox.yaml"
    ;;
  77) skip "C and C++ examples: nothing could be provisioned" ;;
  *) bad "C and C++ examples not run: provisioning failed" ;;
esac
rm -rf "$DEMO"

finish
