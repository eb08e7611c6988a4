#!/usr/bin/env bash
# harness-ab.sh N ROUNDS BIN... — compare gateway binaries under the shared
# harness's Postfix load (../shared/bench, README there), one after the other,
# ROUNDS times: each binary serves the harness's production-like config
# (every check, Redis, dnsmasq, Ed25519 signing) while throughput.sh sends N
# messages through a private Postfix. Prints end-to-end msg/s and the CPU per
# message of the gateway and of its Redis (from /proc, so no profiler runs).
# Run it from the project checkout on an otherwise idle machine; build the
# binaries first (go build -o /tmp/a ./cmd/aupguard).
#   BENCH=../shared/bench  AUPG_KEY=ed25519|rsa
set -u
N=${1:?usage: harness-ab.sh N ROUNDS BIN...} R=${2:?rounds}; shift 2
BENCH=${BENCH:-$(cd "$(dirname "$0")/../../shared/bench" 2>/dev/null && pwd)}
export AUPG_KEY=${AUPG_KEY:-ed25519} AUPG_ADDR=inet:127.0.0.1:9911
D=/tmp/aupgbench-$AUPG_KEY
"$BENCH/aupguard.sh" start >/tmp/harness-ab-start.log 2>&1 || { cat /tmp/harness-ab-start.log; exit 1; }
kill "$(cat $D/aupguard.pid)"; sleep 1
RP=$(cat $D/redis.pid)
tk() { awk '{print $14+$15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
for ((r = 0; r < R; r++)); do
  for BIN in "$@"; do
    "$BIN" serve -config $D/aupguard.yaml > $D/aupguard.log 2>&1 &
    AP=$!; echo $AP > $D/aupguard.pid; sleep 1
    (cd "$BENCH" && N=300 ./throughput.sh warm $AUPG_ADDR >/dev/null 2>&1)
    r0=$(tk $RP); a0=$(tk $AP)
    out=$(cd "$BENCH" && N=$N ./throughput.sh aupg $AUPG_ADDR 2>&1 | tr "\n" " " | grep -o " rate=[0-9.]*" | head -1)
    r1=$(tk $RP); a1=$(tk $AP)
    echo "$(basename "$BIN")$out gateway_ms=$(echo "scale=3; ($a1-$a0)*1000/$hz/$N" | bc) redis_ms=$(echo "scale=3; ($r1-$r0)*1000/$hz/$N" | bc)"
    kill $AP; wait $AP 2>/dev/null; sleep 1
  done
done
"$BENCH/aupguard.sh" stop
