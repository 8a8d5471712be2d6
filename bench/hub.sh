#!/usr/bin/env bash
# Hub benchmarks on this machine: idle subscriber memory, signed publish throughput against a
# hello-world baseline, and fan-out to 10,000 subscribers — each with in-memory state and with a
# peer database. The load tool runs on the same machine (loopback only) and stops by itself.
#
#   cargo build --release && bash bench/hub.sh [in-memory|database|all]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release/goop2
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
which=${1:-all}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start_hub() { # name port peer_db
  local dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/goop.json" <<JSON
{
  "presence": {
    "rendezvous_only": true, "rendezvous_host": true, "rendezvous_port": $2,
    "ttl_seconds": 120, "heartbeat_seconds": 5,
    "publish_burst": 1000000, "publish_per_second": 1000000,
    "max_streams": 20000, "max_streams_per_ip": 30,
    "peer_db_path": "$3"
  },
  "viewer": { "http_addr": "" }
}
JSON
  RUST_LOG=warn $bin rendezvous "$dir" >"$dir/log" 2>&1 &
  hub_pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return; sleep 0.1; done
  echo "hub did not start" >&2; cat "$dir/log" >&2; exit 1
}

run_suite() { # label peer_db
  echo "######## $1"
  start_hub "idle-$1" 18801 "$2"
  echo "== idle subscribers: 10,000 SSE streams, memory slope"
  $bin loadtest http://127.0.0.1:18801 --subscribers 10000 --publishers 1 --rate 1 --duration 2 \
    --streams-per-address 25 --hub-pid $hub_pid
  kill $hub_pid; wait $hub_pid 2>/dev/null || true

  start_hub "publish-$1" 18802 "$2"
  echo "== signed publishes at 10,000/s, no subscribers: latency"
  $bin loadtest http://127.0.0.1:18802 --subscribers 0 --publishers 64 --rate 10000 --duration 10 \
    --hub-pid $hub_pid
  kill $hub_pid; wait $hub_pid 2>/dev/null || true

  start_hub "saturate-$1" 18804 "$2"
  echo "== signed publishes offered at 40,000/s (more than either server takes): the hub against"
  echo "== a plain hello-world server under the same load, in the same run"
  $bin loadtest http://127.0.0.1:18804 --subscribers 0 --publishers 128 --rate 40000 --duration 10 \
    --hub-pid $hub_pid --baseline
  kill $hub_pid; wait $hub_pid 2>/dev/null || true

  start_hub "fanout-$1" 18803 "$2"
  echo "== fan-out: 10,000 subscribers (changes stream), 10 publishes/s"
  $bin loadtest http://127.0.0.1:18803 --subscribers 10000 --publishers 10 --rate 10 --duration 20 \
    --streams-per-address 25 --hub-pid $hub_pid
  kill $hub_pid; wait $hub_pid 2>/dev/null || true
}

case $which in
  in-memory) run_suite in-memory "" ;;
  database) run_suite database "peers.db" ;;
  all) run_suite in-memory ""; run_suite database "peers.db" ;;
esac
