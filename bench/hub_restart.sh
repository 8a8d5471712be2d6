#!/usr/bin/env bash
# A hub restart under a community: N simulated peers (`goop2 loadtest --community`) hold their
# WebSocket streams to a hub (with a peer database unless PEER_DB is empty); once every peer is
# online and has heard the others, the hub is killed (-9) and started again. Reports how long until every stream and
# every peer is back, the hub's CPU time meanwhile, the slowest /healthz answer during it, and
# how many reconnects resumed (missed changes only) or were reset (a whole snapshot).
# The hub runs on CPU 0 and the load tool on CPU 1 (taskset), so each has a core of its own.
# Bounded: the load tool stops by itself after --duration; every wait has a limit.
#
# STOP=TERM stops the hub as systemd does (SIGTERM: it closes its streams and exits) instead of
# killing it (-9).
#
# PEER_DB=path names the hub's peer database (default data/peers.db); PEER_DB= (empty) keeps the
# hub's state in memory, to measure the storm a hub without one meets.
#
# JOIN_RATE=N has the community join N peers a second (a community grows over time; joined all
# at once, thousands of snapshots, each as long as the community so far, are written together).
#
#   cargo build --release && bash bench/hub_restart.sh [PEERS] [HUB_BINARY]
set -uo pipefail
cd "$(dirname "$0")/.."
peers=${1:-1000}
rate=${JOIN_RATE:-0}
bin=${2:-${CARGO_TARGET_DIR:-target}/release/goop2}
load=${CARGO_TARGET_DIR:-target}/release/goop2
[[ -x $bin && -x $load ]] || { echo "build first: cargo build --release" >&2; exit 1; }
port=18998
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
"$bin" init "$work/hub" >/dev/null 2>&1
# Peers' default heartbeat (5 s) against the hub's default TTL (20 s).
python3 - "$work/hub/goop.json" "$port" "${PEER_DB-data/peers.db}" <<'PY'
import json, sys
path, port = sys.argv[1], int(sys.argv[2])
config = json.load(open(path))
presence = config.setdefault("presence", {})
presence.update(rendezvous_only=True, rendezvous_host=True, rendezvous_port=port,
                max_peers=20000, max_streams=40000, peer_db_path=sys.argv[3])
config.setdefault("viewer", {})["http_addr"] = ""
json.dump(config, open(path, "w"), indent=1)
PY
metric() { curl -s --max-time 2 "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1==m {print $2}'; }
cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
hub() { RUST_LOG=warn taskset -c 0 "$bin" rendezvous "$work/hub" >>"$work/hub.log" 2>&1 & }

hub; pid=$!
sleep 1
RUST_LOG=warn taskset -c 1 "$load" loadtest "http://127.0.0.1:$port" --community "$peers" \
  --transport ws --duration 60 --heartbeat 5 --change-every 3000 --churn-every 100000 \
  --join-rate "$rate" >"$work/load.log" 2>&1 &
tool=$!
# Two minutes, and the time the join rate spreads the community over.
for _ in $(seq 1 $((600 + (rate > 0 ? 5 * peers / rate : 0)))); do
  s=$(metric goop_hub_subscribers); p=$(metric goop_hub_peers)
  [[ ${s:-0} -ge $peers && ${p:-0} -ge $peers ]] && break
  sleep 0.2
done
echo "all $peers connected after ${SECONDS} s"
sleep 25
kill -"${STOP:-9}" "$pid"; wait "$pid" 2>/dev/null
hub; pid=$!
start=$(date +%s%N); worst=0
for _ in $(seq 1 1200); do
  asked=$(date +%s%N)
  curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/healthz"
  took=$((($(date +%s%N) - asked) / 1000000)); ((took > worst)) && worst=$took
  s=$(metric goop_hub_subscribers); p=$(metric goop_hub_peers)
  [[ ${s:-0} -ge $peers && ${p:-0} -ge $peers ]] && break
  sleep 0.1
done
echo "after the restart: $s streams and $p peers back in $((($(date +%s%N) - start) / 1000000)) ms;" \
  "hub CPU $(cpu "$pid") s; slowest /healthz ${worst} ms"
wait "$tool"
grep -E "reconnects|errors" "$work/load.log"
