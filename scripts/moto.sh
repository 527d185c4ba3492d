#!/usr/bin/env bash
# moto's AWS server for sealbox's AWS tests: install, start on 127.0.0.1, stop.
#
#   scripts/moto.sh install          # moto[server] + boto3 into $SEALBOX_MOTO_VENV (idempotent)
#   scripts/moto.sh start [PORT]     # start on PORT (default: a free port), wait until it answers,
#                                    # print the endpoint (http://127.0.0.1:PORT) on stdout
#   scripts/moto.sh stop [PORT]      # stop the server this script started on PORT (default: all
#                                    # servers it started), by the pid it recorded
#   scripts/moto.sh env [PORT]       # start, then print `export ...` lines for the tests
#
# Typical use:
#   eval "$(scripts/moto.sh env)"; cargo test -p sealbox-aws; scripts/moto.sh stop
#
# The venv defaults to target/moto-venv (ignored by git); pid and log files live in
# target/moto-run/. Only processes this script started are ever stopped.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEALBOX_MOTO_VENV:-$repo/target/moto-venv}"
rundir="$repo/target/moto-run"
python="${PYTHON:-python3}"

die() { echo "moto.sh: $*" >&2; exit 1; }

install() {
    if [[ -x "$venv/bin/moto_server" ]] && "$venv/bin/python" -c 'import moto, boto3' 2>/dev/null; then
        return 0
    fi
    echo "moto.sh: installing moto[server] and boto3 into $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6' 'boto3>=1.34' >&2
}

free_port() {
    "$python" - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

wait_ready() {
    local port="$1" pid="$2"
    for _ in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            die "moto_server exited during start-up; log: $rundir/moto-$port.log"
        fi
        # moto answers on /moto-api/ once the server is up.
        if "$python" - "$port" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1).read()
EOF
            return 0
        fi
        sleep 0.2
    done
    die "moto_server on port $port did not answer within 30s; log: $rundir/moto-$port.log"
}

start() {
    install
    local port="${1:-$(free_port)}"
    mkdir -p "$rundir"
    # setsid: the server gets its own process group, so `stop` ends it and its children only.
    setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$rundir/moto-$port.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$rundir/moto-$port.pid"
    wait_ready "$port" "$pid"
    echo "http://127.0.0.1:$port"
}

stop_one() {
    local pidfile="$1" pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

stop() {
    if [[ -n "${1:-}" ]]; then
        [[ -f "$rundir/moto-$1.pid" ]] || die "no server started by this script on port $1"
        stop_one "$rundir/moto-$1.pid"
        return 0
    fi
    shopt -s nullglob
    for f in "$rundir"/moto-*.pid; do stop_one "$f"; done
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    env)
        endpoint="$(start "${2:-}")"
        echo "export SEALBOX_TEST_AWS_ENDPOINT=$endpoint"
        echo "export SEALBOX_TEST_MOTO_SERVER=$venv/bin/moto_server"
        echo "export SEALBOX_TEST_PYTHON=$venv/bin/python"
        ;;
    *) die "usage: $0 install | start [PORT] | stop [PORT] | env [PORT]" ;;
esac
