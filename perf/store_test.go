package perf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/loadgen"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestStoreFootprint measures what the production-like gateway costs its
// Redis per message: commands and server CPU (INFO commandstats, after
// CONFIG RESETSTAT) and memory by key family (MEMORY USAGE of every key),
// after AUPG_PERF_N messages (default 20000), each to a distinct
// recipient, through the milter protocol. It prints; it asserts nothing
// about amounts (docs/capacity.md uses its figures):
//
//	AUPG_PERF=store go test -v -count=1 -timeout 20m -run TestStoreFootprint ./perf/
func TestStoreFootprint(t *testing.T) {
	if os.Getenv("AUPG_PERF") != "store" {
		t.Skip("measurement, not a test: run with AUPG_PERF=store (docs/capacity.md)")
	}
	testenv.Need(t, "redis-server")
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("AUPG_PERF_N")); err == nil && v > 0 {
		n = v
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "aupguard")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/aupguard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := newPerfEnv(t, dir)
	env.keyType = "ed25519"
	addr := env.startGateway(t, bin)
	ctx := context.Background()
	if _, err := loadgen.Run(ctx, env.loadOpts(addr, 200, perfSessions, perfSize, 0)); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	rc := env.redis.Client()
	time.Sleep(500 * time.Millisecond) // the warm-up's events are written
	keysBefore := familyUsage(t, rc)
	dataBefore := datasetBytes(t, rc)
	if err := rc.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	cpuBefore := serverCPU(t, rc)
	o := env.loadOpts(addr, n, perfSessions, perfSize, 0)
	o.RcptDomain = "rcpt.example"
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	time.Sleep(time.Second) // the event writer's last batch
	stats := testenv.CommandStats(t, rc)
	cpu := serverCPU(t, rc) - cpuBefore
	keysAfter := familyUsage(t, rc)
	var b strings.Builder
	fmt.Fprintf(&b, "store footprint: %d messages of %d B, 1 distinct recipient each, %d accepted, %.0f msg/s (noisy)\n", n, perfSize, res.Accepted, res.PerSecond)
	var calls, usec int64
	names := make([]string, 0, len(stats))
	for k, v := range stats {
		names = append(names, k)
		calls += v.Calls
		usec += v.Usec
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "redis server CPU (INFO cpu, user+sys, all of the server's work incl. network): %.1f µs per message\n", cpu*1e6/float64(n))
	fmt.Fprintf(&b, "redis commands per message: %.2f, server CPU per message: %.1f µs (commandstats usec)\n", float64(calls)/float64(n), float64(usec)/float64(n))
	for _, k := range names {
		v := stats[k]
		fmt.Fprintf(&b, "  %-14s %7.3f calls/msg %8.1f µs/msg (%.1f µs/call)\n", k, float64(v.Calls)/float64(n), float64(v.Usec)/float64(n), float64(v.Usec)/float64(max(v.Calls, 1)))
	}
	fams := make([]string, 0, len(keysAfter))
	var total int64
	for f := range keysAfter {
		fams = append(fams, f)
	}
	sort.Strings(fams)
	fmt.Fprintf(&b, "redis memory by key family (MEMORY USAGE; growth over the run, per message):\n")
	for _, f := range fams {
		a, bf := keysAfter[f], keysBefore[f]
		d := a[1] - bf[1]
		total += d
		fmt.Fprintf(&b, "  %-40s keys %7d  bytes %10d  growth/msg %7.1f B\n", f, a[0], a[1], float64(d)/float64(n))
	}
	fmt.Fprintf(&b, "  total growth per message: %.1f B\n", float64(total)/float64(n))
	dataAfter := datasetBytes(t, rc)
	fmt.Fprintf(&b, "  INFO memory used_memory_dataset: %d -> %d B, %.1f B per message\n", dataBefore, dataAfter, float64(dataAfter-dataBefore)/float64(n))
	t.Log(b.String())
	fmt.Println(b.String())
}

var (
	famHex   = regexp.MustCompile(`[0-9a-f]{16,}`)
	famDate  = regexp.MustCompile(`\d{8,10}`)
	famCust  = regexp.MustCompile(`\{c:[^}]*\}`)
	famShard = regexp.MustCompile(`rr:(\d+)m:\d+:\d+`)
	famQueue = regexp.MustCompile(`rep:q:[^:]+$`) // one key per accepted message's queue id
	// One key per multi-recipient message (its recipient set) and per
	// counted complaint (optout, complaint binding).
	famStamp = regexp.MustCompile(`:fb([rd]):[A-Za-z0-9_-]+`)
)

// familyUsage returns, by key family (customer, hashes and dates
// replaced), the number of keys and their MEMORY USAGE.
func familyUsage(t *testing.T, rc *redis.Client) map[string][2]int64 {
	ctx := context.Background()
	out := map[string][2]int64{}
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		u, err := rc.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			continue
		}
		f := famCust.ReplaceAllString(k, "{c:ID}")
		f = famShard.ReplaceAllString(f, "rr:${1}m:GEN:SHARD")
		f = famQueue.ReplaceAllString(f, "rep:q:QUEUEID")
		f = famStamp.ReplaceAllString(f, ":fb${1}:REF")
		f = famHex.ReplaceAllString(f, "HASH")
		f = famDate.ReplaceAllString(f, "DATE")
		v := out[f]
		out[f] = [2]int64{v[0] + 1, v[1] + u}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// datasetBytes is INFO memory's used_memory_dataset.
func datasetBytes(t *testing.T, rc *redis.Client) int64 {
	mem, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(mem, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory_dataset:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// serverCPU is INFO cpu's used_cpu_user + used_cpu_sys, in seconds.
func serverCPU(t *testing.T, rc *redis.Client) float64 {
	s, err := rc.Info(context.Background(), "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, l := range strings.Split(s, "\r\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(l, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
	}
	return sum
}
