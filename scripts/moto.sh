#!/usr/bin/env bash
# moto's server on 127.0.0.1 on a free port, started once per run.
# Source this file, then: moto_start (sets MOTO_ENDPOINT, MOTO_PID), moto_stop.
# Run directly (`bash scripts/moto.sh`) it starts moto in the foreground on a free port.

moto_free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

moto_start() {
  local bin=${MOTO_SERVER_BIN:-moto_server}
  command -v "$bin" >/dev/null || { echo "moto_server not found (pip install 'moto[server]')" >&2; return 1; }
  local port log
  port=$(moto_free_port)
  log=${MOTO_LOG:-$(mktemp -t moto.XXXXXX.log)}
  "$bin" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  MOTO_ENDPOINT="http://127.0.0.1:$port"
  export MOTO_PID MOTO_ENDPOINT
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$MOTO_ENDPOINT/moto-api/" 2>/dev/null; then
      echo "moto listening on $MOTO_ENDPOINT (pid $MOTO_PID, log $log)"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto exited early; its log:" >&2; cat "$log" >&2; return 1
    fi
    sleep 0.2
  done
  echo "moto did not answer on $MOTO_ENDPOINT within 30 s" >&2
  return 1
}

moto_stop() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    echo "moto stopped"
  fi
  MOTO_PID=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  port=${1:-$(moto_free_port)}
  exec "${MOTO_SERVER_BIN:-moto_server}" -H 127.0.0.1 -p "$port"
fi
