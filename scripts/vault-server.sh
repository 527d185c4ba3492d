#!/usr/bin/env bash
# The real Vault server sealbox's Vault tests run against, built once from the Go module proxy
# and cached by version outside the clone.
#
#   scripts/vault-server.sh ensure   # build ~/.cache/sealbox/vault-$VERSION/vault if missing
#                                    # (progress and time on stderr), print its path on stdout
#   scripts/vault-server.sh path     # print where the binary is (or would be)
#
# Debian has no Vault package and `go install github.com/hashicorp/vault@v1.21.0` fails on
# Vault's `replace` directives, so a small wrapper module (providers/vault/server: go.mod,
# go.sum, tools.go) requires github.com/hashicorp/vault v1.21.0 (that exact version: later
# 1.21.x tags do not compile this way) and repeats Vault's two non-local `replace` lines; the
# binary is `go build` of github.com/hashicorp/vault inside it. Vault is BUSL-1.1 licensed:
# sealbox uses it only as a test server and ships none of it.
#
# The tests start their own dev-mode servers from this binary (providers/vault/tests/support).
# Installing Go is the machine's job; this script checks for it and says so.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${SEALBOX_VAULT_VERSION:-1.21.0}"
cache="${SEALBOX_CACHE_DIR:-$HOME/.cache/sealbox}"
dir="$cache/vault-$version"
bin="$dir/vault"
module="$repo/providers/vault/server"

die() { echo "vault-server.sh: $*" >&2; exit 1; }

ensure() {
    if [[ -x "$bin" ]]; then
        echo "$bin"
        return 0
    fi
    # One build at a time: .ci/run starts one in the background while Rust compiles, and the
    # test command's own `ensure` then waits for it here instead of starting a second.
    mkdir -p "$dir"
    exec 9>"$dir/.lock"
    if ! flock -n 9; then
        echo "vault-server.sh: another build of Vault $version is running; waiting for it" >&2
        flock 9
    fi
    if [[ -x "$bin" ]]; then
        echo "$bin"
        return 0
    fi
    command -v go >/dev/null 2>&1 ||
        die "Go is not installed; install Go 1.25 or later (it builds Vault $version from the Go module proxy)"
    local gov
    gov=$(go version) || die "\`go version\` failed"
    grep -q "require github.com/hashicorp/vault v$version" "$module/go.mod" ||
        die "$module/go.mod does not require hashicorp/vault v$version"
    echo "vault-server.sh: building Vault $version with $gov into $bin" >&2
    echo "vault-server.sh: this takes about 20 minutes on 2 cores with a warm module cache, longer cold" >&2
    mkdir -p "$dir"
    local started tmp
    started=$(date +%s)
    tmp="$dir/vault.partial.$$"
    # Progress: Go prints each package as it compiles it with -v; show a count every 30 s.
    (
        cd "$module"
        GOFLAGS=-mod=mod CGO_ENABLED=0 go build -v -trimpath -ldflags '-s -w' -o "$tmp" \
            github.com/hashicorp/vault 2>"$dir/build.log"
    ) &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 30
        if kill -0 "$pid" 2>/dev/null; then
            echo "vault-server.sh: [$(( $(date +%s) - started ))s] $(wc -l <"$dir/build.log") packages built" >&2
        fi
    done
    if ! wait "$pid"; then
        rm -f "$tmp"
        tail -n 40 "$dir/build.log" >&2
        die "building Vault $version failed (log: $dir/build.log)"
    fi
    mv "$tmp" "$bin"
    echo "vault-server.sh: built $("$bin" version) in $(( $(date +%s) - started ))s" >&2
    echo "$bin"
}

case "${1:-}" in
    ensure) ensure ;;
    path) echo "$bin" ;;
    *) die "usage: $0 ensure|path" ;;
esac
