#!/usr/bin/env bash
# Peer benchmarks: site fetch over libp2p against a plain TCP copy (in one run), the data API
# over libp2p against the same operations in-process (in one run), Lua calls beside a no-op data
# op (in one run) — the cargo benches in benches/ — then the time from starting `goop2 peer` to
# its console answering, and an idle peer's memory.
#
#   cargo build --release && bash bench/peer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release/goop2
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== site fetch: a 10 MiB file, 10 rounds, libp2p vs plain TCP"
cargo bench --quiet --bench site -- --megabytes 10 --rounds 10

echo "== data API: 20-row query and insert, 8 callers, libp2p vs in-process"
cargo bench --quiet --bench data -- --ops 20000 --callers 8

echo "== Lua: trivial and one-query functions, in-process and over libp2p, beside a no-op data op"
cargo bench --quiet --bench lua -- --calls 20000 --callers 8

echo "== start-up and idle memory of a peer (embedded defaults, console on 127.0.0.1:18990)"
$bin init "$work/peer" --label "Bench peer" >/dev/null
sed -i 's/"http_addr": "127.0.0.1:8080"/"http_addr": "127.0.0.1:18990"/' "$work/peer/goop.json"
for run in 1 2 3; do
  start=$(date +%s%N)
  RUST_LOG=warn $bin peer "$work/peer" >"$work/log" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:18990/; do sleep 0.005; done
  ready=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "run $run: console answered $ready ms after start"
  if [[ $run == 3 ]]; then
    sleep 10
    echo "idle RSS after 10 s: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
  fi
  kill $pid; wait $pid 2>/dev/null || true
done
