#!/usr/bin/env bash
# content-harness.sh — the shared harness's Postfix load (../shared/bench,
# README there) with the content checks off and on, and the do-nothing
# milter (noop-nr) for the ratio, interleaved ROUNDS times.
#
#   perf/content-harness.sh            # from the project checkout
#   N=5000 ROUNDS=3 BENCH=../shared/bench perf/content-harness.sh
#
# The harness's aupguard.sh cannot take an extra config, so this script
# reuses its pieces: aupguard.sh start writes the production-like config
# (every check, Redis, dnsmasq, Ed25519 signing) and starts Redis and
# dnsmasq; rspamd.sh starts rspamd (its normal worker is the scanner the
# gateway posts to); a private clamd runs on a Unix socket. The gateway is
# then started by this script twice per round, once with that config
# ("off") and once with a content: section added ("on": malware to clamd,
# spam_score to rspamd's /checkv2, listed_url on a blocklist zone of the
# harness's dnsmasq, which answers NXDOMAIN). The harness is copied into a
# private folder first (the shared one is read-only; noop.sh builds there)
# and everything runs on its own ports, so that another run of the harness
# on the machine is not disturbed. Each run prints end-to-end msg/s and the
# CPU per message (from /proc, utime+stime) of the gateway, its Redis,
# clamd and rspamd (all its processes); the end prints medians and ratios.
#
# What the figures are not: clamd knows one test signature here (no
# signature download is possible), so its per-message cost is its MIME
# parsing and the protocol, not matching millions of signatures; rspamd's
# DNS answers NXDOMAIN at once (see the harness's README); smtp-source's
# messages carry no links, so listed_url asks nothing.
#
# Env: N=5000 ROUNDS=3 SESSIONS=20 SIZE=4096 BENCH=../shared/bench KEEP_WORK=0
# Stops only what it started.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$(cd "$SRC/../../shared/bench" 2>/dev/null && pwd)}
[ -x "$BENCH/throughput.sh" ] || { echo "content-harness: no harness at BENCH=$BENCH" >&2; exit 2; }
export N=${N:-5000} SESSIONS=${SESSIONS:-20} SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/aupg-content-bench.XXXXXX) && chmod 755 "$WORK"   # Postfix (user postfix) works in it
cp -r "$BENCH"/. "$WORK/bench" && chmod -R u+w "$WORK/bench"
B=$WORK/bench

# Ports and folders of our own.
export PF_DIR=$WORK/pf PF_PORT=10045 SINK_PORT=10046
export AUPG_SRC=$SRC AUPG_KEY=ed25519 AUPG_DIR=$WORK/aupg AUPG_ADDR=inet:127.0.0.1:9941 AUPG_REDIS_PORT=6397 AUPG_DNS_PORT=10067
RSENV=(RS_DIR=$WORK/rspamd RS_MILTER_PORT=11352 RS_NORMAL_PORT=11353 RS_CONTROLLER_PORT=11354 REDIS_PORT=6398 DNS_PORT=10068)
NOOPENV=(NOOP_ADDR=inet:127.0.0.1:9951 NOOP_DIR=$WORK/noop NOOP_NR=1 NOOP_BUFIO=0)
CLAMD_DIR=$WORK/clamd
CLAMD_SOCK=$CLAMD_DIR/clamd.sock

GW_PID=
cleanup() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  [ -f "$CLAMD_DIR/clamd.pid.ours" ] && kill "$(cat "$CLAMD_DIR/clamd.pid.ours")" 2>/dev/null
  env "${NOOPENV[@]}" "$B/noop.sh" stop >/dev/null 2>&1
  env "${RSENV[@]}" "$B/rspamd.sh" stop >/dev/null 2>&1
  "$B/aupguard.sh" stop >/dev/null 2>&1
  "$B/pf.sh" stop >/dev/null 2>&1
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "content-harness: starting noop-nr, the harness's gateway setup, rspamd, clamd (work dir $WORK)" >&2
env "${NOOPENV[@]}" "$B/noop.sh" start >/dev/null || { echo "content-harness: noop.sh failed" >&2; exit 1; }
"$B/aupguard.sh" start > "$WORK/aupg-start.log" 2>&1 || { cat "$WORK/aupg-start.log" >&2; exit 1; }
# Keep its Redis, dnsmasq, key and config; this script runs the gateway.
kill "$(cat "$AUPG_DIR/aupguard.pid")"; rm -f "$AUPG_DIR/aupguard.pid"; sleep 1
env "${RSENV[@]}" "$B/rspamd.sh" start > "$WORK/rspamd-start.log" 2>&1 || { cat "$WORK/rspamd-start.log" >&2; exit 1; }

mkdir -p "$CLAMD_DIR/db"
# One test signature (ndb, hex of its bytes); no real database is available.
printf 'AupguardBenchSig:0:*:%s\n' "$(printf 'AUPGUARD-BENCH-PATTERN-5d1e' | od -An -tx1 | tr -d ' \n')" > "$CLAMD_DIR/db/bench.ndb"
cat > "$CLAMD_DIR/clamd.conf" <<EOF
LocalSocket $CLAMD_SOCK
LocalSocketMode 660
DatabaseDirectory $CLAMD_DIR/db
TemporaryDirectory $CLAMD_DIR
LogFile $CLAMD_DIR/clamd.log
Foreground yes
PidFile $CLAMD_DIR/clamd.pid
StreamMaxLength 26214400
MaxThreads 12
ScanMail yes
ScanArchive yes
EOF
clamd -c "$CLAMD_DIR/clamd.conf" > "$CLAMD_DIR/stdout.log" 2>&1 < /dev/null &
echo $! > "$CLAMD_DIR/clamd.pid.ours"
for ((i = 0; i < 300; i++)); do [ -S "$CLAMD_SOCK" ] && break; sleep 0.1; done
[ -S "$CLAMD_SOCK" ] || { echo "content-harness: clamd did not start" >&2; cat "$CLAMD_DIR/clamd.log" "$CLAMD_DIR/stdout.log" >&2; exit 1; }

# The content-on config: the harness's, plus the three engines. The
# thresholds are out of reach: the load measures the cost, not verdicts
# (a held message would never reach the sink).
cp "$AUPG_DIR/aupguard.yaml" "$AUPG_DIR/aupguard-content.yaml"
cat >> "$AUPG_DIR/aupguard-content.yaml" <<EOF
content:
  clamd: {address: "unix:$CLAMD_SOCK", stream_max_length: 26214400, max_concurrent: 12}
  rspamd: {url: "http://127.0.0.1:11353", hold: 1000, reject: 2000, max_concurrent: 16}
  urls: {zones: [{zone: dbl.bench.test, kind: dbl}]}
EOF
"$AUPG_DIR/aupguard" check-config -q -config "$AUPG_DIR/aupguard-content.yaml" || exit 1

hz=$(getconf CLK_TCK)
ticks() { local s=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
ms() { echo "scale=3; $1*1000/$hz/$N" | bc; }
# rspamd: its main process, its workers, and its Redis when rspamd.sh started one.
rspamd_pids() { local m; m=$(tr -dc 0-9 < "$WORK/rspamd/run/rspamd.pid"); echo "$m $(ps -o pid= --ppid "$m" | tr '\n' ' ') $(cat "$WORK/rspamd/redis.pid" 2>/dev/null)"; }
REDIS_PID=$(cat "$AUPG_DIR/redis.pid")
CLAMD_PID=$(cat "$CLAMD_DIR/clamd.pid.ours")

declare -A RATES GW RD CL RS
run_one() { # NAME MILTER
  local out rate
  out=$(cd "$B" && "$B/throughput.sh" "$1" "$2" 2>&1)
  rate=$(echo "$out" | grep -o 'rate=[0-9.]*' | head -1 | cut -d= -f2)
  if [ -z "$rate" ] || [ "$(echo "$rate > 0" | bc)" != 1 ]; then
    echo "content-harness: $1: no mail went through:" >&2; echo "$out" | tail -5 >&2; exit 1
  fi
  echo "$rate"
}
for ((r = 1; r <= ROUNDS; r++)); do
  rate=$(run_one noop-nr inet:127.0.0.1:9951) || exit 1
  echo "round $r noop-nr rate=$rate"
  RATES[noop]+="$rate "
  for cfg in off on; do
    conf=$AUPG_DIR/aupguard.yaml
    [ "$cfg" = on ] && conf=$AUPG_DIR/aupguard-content.yaml
    "$AUPG_DIR/aupguard" serve -config "$conf" > "$AUPG_DIR/serve-$cfg.log" 2>&1 < /dev/null &
    GW_PID=$!
    for ((i = 0; i < 100; i++)); do (exec 3<>/dev/tcp/127.0.0.1/9941) 2>/dev/null && break; sleep 0.1; done
    (cd "$B" && N=300 "$B/throughput.sh" warm "$AUPG_ADDR" >/dev/null 2>&1)
    RSP=$(rspamd_pids)
    g0=$(ticks "$GW_PID") d0=$(ticks "$REDIS_PID") c0=$(ticks "$CLAMD_PID") s0=$(ticks $RSP)
    rate=$(run_one "aupg-$cfg" "$AUPG_ADDR") || exit 1
    g1=$(ticks "$GW_PID") d1=$(ticks "$REDIS_PID") c1=$(ticks "$CLAMD_PID") s1=$(ticks $RSP)
    kill "$GW_PID"; wait "$GW_PID" 2>/dev/null; GW_PID=
    if [ "$cfg" = on ] && { [ "$c1" = "$c0" ] || [ "$s1" = "$s0" ]; }; then
      echo "content-harness: clamd or rspamd used no CPU with the content checks on: not scanning?" >&2
      tail -5 "$AUPG_DIR/serve-on.log" >&2
    fi
    echo "round $r content-$cfg rate=$rate gateway_ms=$(ms $((g1 - g0))) redis_ms=$(ms $((d1 - d0))) clamd_ms=$(ms $((c1 - c0))) rspamd_ms=$(ms $((s1 - s0)))"
    RATES[$cfg]+="$rate " GW[$cfg]+="$(ms $((g1 - g0))) " RD[$cfg]+="$(ms $((d1 - d0))) " CL[$cfg]+="$(ms $((c1 - c0))) " RS[$cfg]+="$(ms $((s1 - s0))) "
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
mn=$(echo "${RATES[noop]}" | median) moff=$(echo "${RATES[off]}" | median) mon=$(echo "${RATES[on]}" | median)
echo "medians of $ROUNDS rounds, N=$N: noop-nr $mn, content off $moff, content on $mon msg/s"
echo "ratio to noop-nr: off $(echo "scale=3; $moff/$mn" | bc), on $(echo "scale=3; $mon/$mn" | bc); on/off $(echo "scale=3; $mon/$moff" | bc)"
for cfg in off on; do
  echo "content $cfg CPU ms/msg (median): gateway $(echo "${GW[$cfg]}" | median), redis $(echo "${RD[$cfg]}" | median), clamd $(echo "${CL[$cfg]}" | median), rspamd $(echo "${RS[$cfg]}" | median)"
done
