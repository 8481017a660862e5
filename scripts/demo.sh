#!/usr/bin/env bash
# README command 1: install, start the server with the default template, run the demo against it,
# then keep serving in the foreground until Ctrl-C (set FORKBOX_DEMO_EXIT=1 to stop after the demo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"

data="${FORKBOX_DATADIR:-/var/lib/forkbox}"
log="$data/serve.log"
mkdir -p "$data"
"$root/forkbox" serve --data-dir "$data" >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if curl -fsS http://127.0.0.1:7070/v1/healthz >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then
    echo "demo: the server did not start; its log ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "demo: server up on http://127.0.0.1:7070 (log: $log)"
"$root/forkbox" demo

if [[ "${FORKBOX_DEMO_EXIT:-0}" == 1 ]]; then exit 0; fi
echo "demo: the server keeps running; try: ./forkbox sandbox create. Ctrl-C stops it."
wait $server
