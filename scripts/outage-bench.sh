#!/usr/bin/env bash
# Load test of a store outage (issue 11, docs/ratelimit.md "Store outages"):
# a gateway on a private redis-server (store.on_error: accept, the
# rate_limit check in the chain) is driven by `aupguard-load bench`; redis-server
# is killed (SIGKILL) for OUTAGE seconds. Prints the throughput before,
# during and after the outage, and the sessions dropped by one continuous
# run across it. Loopback only; everything lives in a temporary directory.
#
# Usage: scripts/outage-bench.sh [MESSAGES_PER_PHASE] [OUTAGE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
per_phase="${1:-1500}"
outage="${2:-5}"
export PATH="$PATH:/usr/sbin:/sbin"
tmp="$(mktemp -d)"
bin="$tmp/aupguard"
load="$tmp/aupguard-load"
go build -o "$bin" ./cmd/aupguard
go build -o "$load" ./cmd/aupguard-load

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport="$(free_port)"
mport="$(free_port)"
redis_start() {
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2; exit 1
}
redis_kill() { kill -9 "$(cat "$tmp/redis.pid")"; rm -f "$tmp/redis.pid"; }

cat >"$tmp/aupguard.yaml" <<YAML
milter: {listen: "inet:127.0.0.1:$mport"}
log: {format: json}
store:
  backend: redis
  on_error: accept
  redis: {addrs: ["127.0.0.1:$rport"]}
optout: {unsubscribe: {listen: "off"}}
chain: [sender_identity, rate_limit]
# The spike detector still runs (and does its store work) but only records.
checks: {rate_limit: {findings: {volume_spike: accept}}}
defaults:
  limits: {messages_per_minute: 10000000, messages_per_hour: 100000000, messages_per_day: 1000000000,
           recipients_per_hour: 100000000, recipients_per_day: 1000000000, bytes_per_day: 1000000GB}
customers:
  - id: acme
    networks: [127.0.0.0/8]
    domains: [acme.example]
YAML

redis_start
"$bin" serve -config "$tmp/aupguard.yaml" 2>"$tmp/gateway.log" &
gw=$!
cleanup() {
  kill "$gw" 2>/dev/null || true
  [ -f "$tmp/redis.pid" ] && kill -9 "$(cat "$tmp/redis.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.1; done

bench() { "$load" bench -milter "inet:127.0.0.1:$mport" -sessions 20 -size 2048 "$@" || true; }
bench -messages 300 >/dev/null # warm up

echo "== before the outage (Redis up)"
bench -messages "$per_phase"
echo "== during the outage (Redis killed)"
redis_kill
start=$(date +%s.%N)
bench -messages "$per_phase"
left=$(python3 -c "print(max(0, $outage - ($(date +%s.%N) - $start)))")
sleep "$left"
redis_start
sleep 1 # recovery is within a second of Redis answering again
echo "== after the outage (Redis back)"
bench -messages "$per_phase"

rate="${RATE:-150}"
echo "== one continuous run paced at ${rate} msg/s for 15s, Redis killed from 5s to $((5 + outage))s"
( sleep 5; redis_kill; sleep "$outage"; redis_start ) &
killer=$!
bench -messages $((rate * 15)) -rate "$rate" -progress 1s 2>&1
wait "$killer"
echo "== gateway log about the store"
grep -E 'store unreachable|store reachable again' "$tmp/gateway.log" || true
grep -c 'milter connection closed\|panic recovered' "$tmp/gateway.log" | sed 's/^/dropped-connection and panic log lines: /'
