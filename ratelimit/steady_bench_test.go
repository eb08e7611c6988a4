package ratelimit

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	rb := newRedis(h)
	clk := clock.NewFake(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
	rb.clk = clk
	ctx := context.Background()
	ops := []Op{window("mpd", 1e9, 1), window("bpd", 1e12, 4000)}
	for i := 0; i < WindowBuckets; i++ {
		if _, err := rb.Run(ctx, "acme", ModeReserve, ops); err != nil {
			b.Fatal(err)
		}
		clk.Advance(10 * time.Minute)
	}
	rc := r.Client()
	rc.ConfigResetStat(ctx)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rb.Run(ctx, "acme", ModeReserve, ops); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	s, err := rc.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var usec, cmds float64
	for _, l := range strings.Split(s, "\r\n") {
		m := regexp.MustCompile(`^cmdstat_([a-z|]+):calls=(\d+),usec=(\d+),`).FindStringSubmatch(l)
		if m == nil || m[1] == "info" || m[1] == "config|resetstat" {
			continue
		}
		c, _ := strconv.ParseFloat(m[2], 64)
		u, _ := strconv.ParseFloat(m[3], 64)
		if m[1] == "evalsha" || m[1] == "eval" {
			usec += u
		} else {
			cmds += c
		}
	}
	b.ReportMetric(usec/float64(b.N), "lua-µs/op")
	b.ReportMetric(cmds/float64(b.N), "rediscmds/op")
}
