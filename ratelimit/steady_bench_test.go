package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// BenchmarkDailyWindowsSteadyState is the end-of-message counter work of a
// customer that has sent all day: two daily quotas (messages and bytes)
// with all 144 ten-minute buckets filled, on a real Redis. It reports the
// server's Lua time (commandstats usec, noisy on a shared machine) and the
// commands run per call (not noisy). Before the running total, each daily
// quota summed its 144 buckets (HGETALL) for every message.
func BenchmarkDailyWindowsSteadyState(b *testing.B) {
	r, rb, clk := steadyRedis(b, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
	steadyRun(b, r, rb, clk, []Op{window("mpd", 1e9, 1), window("bpd", 1e12, 4000)}, WindowBuckets, 10*time.Minute, 0)
}

// BenchmarkRecipientOneAddressSteadyState is the counter work of a message
// to a recipient who got one message every 20 seconds for a day (4320)
// under per-recipient limits that do not bind (a customer's ticket system):
// with slots the work and the stored value are bounded by the window, where
// one entry per send made every message unpack, sort and repack 4320 times
// (17 KB). It reports the server's Lua time, the commands per call and the
// recipient's stored bytes.
func BenchmarkRecipientOneAddressSteadyState(b *testing.B) {
	// Ahead of the real clock: Redis expires the keys by its own.
	r, rb, clk := steadyRedis(b, time.Now().Add(1000*time.Hour))
	ops := []Op{rcpt("prh", "inbox", 1e9, time.Hour), rcpt("prd", "inbox", 1e9, 24*time.Hour)}
	steadyRun(b, r, rb, clk, ops, 4320, 20*time.Second, 20*time.Second)
	ctx, rc := context.Background(), r.Client()
	keys, err := rc.Keys(ctx, "*:rr:*").Result()
	if err != nil {
		b.Fatal(err)
	}
	var size int
	for _, k := range keys {
		vals, err := rc.HVals(ctx, k).Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range vals {
			size += len(v)
		}
	}
	b.ReportMetric(float64(size), "recipient-bytes")
}

// steadyRedis is a private Redis and the Redis backend on it, driven by a
// fake clock starting at start.
func steadyRedis(b *testing.B, start time.Time) (*testenv.Redis, *redisBackend, *clock.Fake) {
	b.Helper()
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	rb, err := newRedis(h)
	if err != nil {
		b.Fatal(err)
	}
	rb.clk = clock.NewFake(start)
	return r, rb, rb.clk.(*clock.Fake)
}

// steadyRun reserves ops fill times, step apart, then b.N times more,
// every apart, and reports the scripts' Redis time and commands.
func steadyRun(b *testing.B, r *testenv.Redis, rb *redisBackend, clk *clock.Fake, ops []Op, fill int, step, every time.Duration) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < fill; i++ {
		if _, err := rb.Run(ctx, "acme", ModeReserve, ops); err != nil {
			b.Fatal(err)
		}
		clk.Advance(step)
	}
	rc := r.Client()
	rc.ConfigResetStat(ctx)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rb.Run(ctx, "acme", ModeReserve, ops); err != nil {
			b.Fatal(err)
		}
		clk.Advance(every)
	}
	b.StopTimer()
	reportLua(b, rc)
}

// reportLua reports the scripts' server time per op (commandstats usec,
// noisy on a shared machine) and the commands they ran (not noisy).
func reportLua(b *testing.B, rc *redis.Client) {
	b.Helper()
	_, usec, cmds := testenv.ScriptStats(testenv.CommandStats(b, rc))
	b.ReportMetric(float64(usec)/float64(b.N), "lua-µs/op")
	b.ReportMetric(float64(cmds)/float64(b.N), "rediscmds/op")
}
