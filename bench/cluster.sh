#!/usr/bin/env bash
# Capacity of hubs sharing PostgreSQL (presence.peer_db_url), under loads like bench/hub.sh's:
# one instance without a database (the baseline), one with PostgreSQL reached directly, one
# behind nginx, three behind nginx's round robin (deploy/nginx-three-instances.conf's proxy
# settings). Everything runs on this machine (loopback
# only), is bounded and stops by itself; each configuration gets a fresh database.
#
#   cargo build --release
#   eval "$(bash .ci/postgres)"          # or export GOOP2_TEST_POSTGRES=postgres://…/postgres
#   bash bench/cluster.sh [memory|direct|one|three|all]
#   bash bench/cluster.sh community [PEERS] [ws|sse]
#
# `community` runs `loadtest --community` (default 1,000 peers over WebSocket) against one
# instance behind nginx and three behind nginx, alternately, ROUNDS times each (2), and reports
# the instances' memory added up. DURATION (20 s), CHANGE_EVERY (300 s) and CHURN_EVERY (600 s)
# are passed on; at 5,000 peers use 3600 for both, or every change sent to all saturates the
# two cores.
#
# GOOP2_BIN overrides the binary (default: release/goop2 under CARGO_TARGET_DIR, else target/).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GOOP2_BIN:-${CARGO_TARGET_DIR:-target}/release/goop2}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
[[ -n ${GOOP2_TEST_POSTGRES:-} ]] || {
  echo "needs PostgreSQL: eval \"\$(bash .ci/postgres)\" (after apt-get install postgresql)" >&2
  exit 1
}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx ]] || { echo "needs nginx: apt-get install nginx" >&2; exit 1; }
which=${1:-all}
work=$(mktemp -d)
databases=()
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  for db in "${databases[@]}"; do
    psql "$GOOP2_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

new_database() { # name → prints its URL
  psql "$GOOP2_TEST_POSTGRES" -qc "CREATE DATABASE $1" >/dev/null
  databases+=("$1")
  echo "${GOOP2_TEST_POSTGRES%/*}/$1"
}

hub_pids=()
start_hub() { # name port db_url
  local dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/goop.json" <<JSON
{
  "presence": {
    "rendezvous_only": true, "rendezvous_host": true, "rendezvous_port": $2,
    "ttl_seconds": 120, "heartbeat_seconds": 5,
    "publish_burst": 1000000, "publish_per_second": 1000000,
    "max_streams": 20000, "max_streams_per_ip": 30,
    "trusted_proxies": ["127.0.0.1"],
    "peer_db_url": "$3"
  },
  "viewer": { "http_addr": "" }
}
JSON
  RUST_LOG=warn $bin rendezvous "$dir" >"$dir/log" 2>&1 &
  hub_pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return; sleep 0.1; done
  echo "hub did not start" >&2; cat "$dir/log" >&2; exit 1
}

start_nginx() { # port upstream-ports...
  local port=$1; shift
  local dir=$work/nginx-$port servers=""
  mkdir -p "$dir"
  for p in "$@"; do servers+="    server 127.0.0.1:$p max_fails=1 fail_timeout=5s;"$'\n'; done
  local user=""
  [[ $(id -u) == 0 ]] && user="user root;"
  cat >"$dir/nginx.conf" <<CONF
$user
daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fcgi;
  uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  map \$http_upgrade \$connection_upgrade {
    default upgrade;
    '' '';
  }
  upstream hubs {
$servers    keepalive 256;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://hubs;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 1h;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
    }
  }
}
CONF
  $nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
  echo "nginx did not start" >&2; cat "$dir/error.log" >&2; exit 1
}

stop_all() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  hub_pids=()
}

loads() { # url
  echo "== signed publishes at 5,000/s, no subscribers: latency"
  $bin loadtest "$1" --subscribers 0 --publishers 64 --rate 5000 --duration 10
  echo "== signed publishes offered at 40,000/s: what is accepted"
  $bin loadtest "$1" --subscribers 0 --publishers 128 --rate 40000 --duration 10
  echo "== fan-out: 3,000 subscribers (changes stream), 10 publishes/s"
  $bin loadtest "$1" --subscribers 3000 --publishers 10 --rate 10 --duration 20 \
    --streams-per-address 25
}

community() { # url
  local pids
  pids=$(IFS=,; echo "${hub_pids[*]}")
  echo "== community: $peers peers over $transport, ${DURATION:-20} s"
  $bin loadtest "$1" --community "$peers" --transport "$transport" --duration "${DURATION:-20}" \
    --heartbeat 5 --change-every "${CHANGE_EVERY:-300}" --churn-every "${CHURN_EVERY:-600}" \
    --hub-pid "$pids"
}

run() { # label
  local db
  case $1 in
    memory)
      echo "######## one instance without a database, direct (the baseline of this run)"
      start_hub memory 18801 ""
      loads http://127.0.0.1:18801 ;;
    direct)
      echo "######## one instance, direct"
      db=$(new_database "bench_direct_$$")
      start_hub direct 18811 "$db"
      loads http://127.0.0.1:18811 ;;
    one)
      echo "######## one instance behind nginx"
      db=$(new_database "bench_one_$$")
      start_hub one 18821 "$db"
      start_nginx 18820 18821
      loads http://127.0.0.1:18820 ;;
    three)
      echo "######## three instances behind nginx (round robin)"
      db=$(new_database "bench_three_$$")
      start_hub three-a 18831 "$db"
      start_hub three-b 18832 "$db"
      start_hub three-c 18833 "$db"
      start_nginx 18830 18831 18832 18833
      loads http://127.0.0.1:18830 ;;
    community-one)
      echo "######## community: one instance behind nginx"
      db=$(new_database "bench_cone_$$_$2")
      start_hub cone-$2 18841 "$db"
      start_nginx 18840 18841
      community http://127.0.0.1:18840 ;;
    community-three)
      echo "######## community: three instances behind nginx (round robin)"
      db=$(new_database "bench_cthree_$$_$2")
      start_hub cthree-$2-a 18851 "$db"
      start_hub cthree-$2-b 18852 "$db"
      start_hub cthree-$2-c 18853 "$db"
      start_nginx 18850 18851 18852 18853
      community http://127.0.0.1:18850 ;;
  esac
  stop_all
}

case $which in
  all) run memory; run direct; run one; run three ;;
  memory|direct|one|three) run "$which" ;;
  community)
    peers=${2:-1000} transport=${3:-ws}
    for round in $(seq "${ROUNDS:-2}"); do
      run community-one "$round"
      run community-three "$round"
    done ;;
  *) echo "usage: bench/cluster.sh [memory|direct|one|three|all] | community [PEERS] [ws|sse]" >&2
     exit 2 ;;
esac
