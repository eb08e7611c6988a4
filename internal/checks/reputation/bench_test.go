package reputation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// BenchmarkBounceRateEOM measures the check's end-of-message work (one
// store round trip reading the window's counters) and its Finish (one
// write), per message, on the memory store and on a real Redis.
func BenchmarkBounceRateEOM(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			sc := config.StoreConfig{Backend: "memory"}
			if backend == "redis" {
				r := testenv.StartRedis(b, testenv.RedisOptions{})
				sc = config.StoreConfig{Backend: "redis", Timeout: time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "b:", DialTimeout: time.Second}}
			}
			clk := clock.NewFake(t0)
			h, err := store.Open(sc, clk)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			svc, err := NewService(h, testConfig(b, ""), testKey, clk, nil)
			if err != nil {
				b.Fatal(err)
			}
			chk := NewCheck(svc)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tx := &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: fmt.Sprintf("Q%d", i)}
				if _, err := chk.EOM(ctx, tx); err != nil {
					b.Fatal(err)
				}
				chk.Finish(ctx, tx, true)
			}
		})
	}
}

// BenchmarkReaderLine measures one delivery line: parse, classify, match
// and count (memory store).
func BenchmarkReaderLine(b *testing.B) {
	clk := clock.NewFake(t0)
	h, _ := store.Open(config.StoreConfig{Backend: "memory"}, clk)
	defer h.Close()
	svc, _ := NewService(h, testConfig(b, ""), testKey, clk, nil)
	rd := NewReader(svc)
	ctx := context.Background()
	_, _ = svc.Backend.Remember(ctx, "4F3A21C0D2", Message{Customer: "acme"}, time.Hour)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd.Line(ctx, fmt.Sprintf("Nov 29 23:50:01 mta1 postfix/smtp[4242]: 4F3A21C0D2: to=<u%d@example.org>, relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)", i))
	}
}

// BenchmarkBounceWindowEOMBatch measures the bounce_rate check's part of
// the end-of-message batch on a real Redis for a customer with results in
// every hour of its window (24 h and 72 h): per message, the Redis
// commands (all of them, INFO commandstats) and the server's time in the
// batch script (evalsha usec: Lua and the commands it calls).
func BenchmarkBounceWindowEOMBatch(b *testing.B) {
	for _, window := range []time.Duration{24 * time.Hour, 72 * time.Hour} {
		b.Run(window.String(), func(b *testing.B) {
			h, svc, clk := benchRedisService(b, fmt.Sprintf("reputation:\n  bounces:\n    window: %s\n", window))
			chk := NewCheck(svc)
			ctx := context.Background()
			// A result of each class, from two egress addresses, in every
			// hour of the window.
			start := t0
			clk.Set(start.Add(-window))
			n := 0
			for clk.Now().Before(start) {
				for _, c := range []Class{Sent, Sent, Sent, HardBounce, PolicyBounce, OtherBounce, Deferred} {
					n++
					qid := fmt.Sprintf("F%d", n)
					_, _ = svc.Backend.Remember(ctx, qid, Message{Customer: "acme"}, time.Hour)
					now := clk.Now()
					since, _ := svc.window(now)
					if _, _, _, err := svc.Backend.Record(ctx, Result{QueueID: qid, RcptHash: fmt.Sprint(n), Class: c, Egress: fmt.Sprintf("192.0.2.%d", 10+n%2)}, now, since, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				clk.Advance(time.Hour)
			}
			clk.Set(start)
			eom := func(i int) {
				tx := &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: fmt.Sprintf("Q%d", i)}
				sb := h.NewBatch()
				chk.PrepareEOM(ctx, tx, sb)
				if err := sb.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := chk.EOM(ctx, tx); err != nil {
					b.Fatal(err)
				}
			}
			eom(-1) // the hour's first message moves the running total
			before := testenv.CommandStats(b, h.Client)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				eom(i)
			}
			b.StopTimer()
			reportStore(b, before, testenv.CommandStats(b, h.Client))
		})
	}
}

// BenchmarkRecordRedis measures counting one delivery result on a real
// Redis for a customer with results in every hour of a 24 h window: per
// result, the Redis commands (INFO commandstats) and the server's time in
// the record script (evalsha usec).
func BenchmarkRecordRedis(b *testing.B) {
	h, svc, clk := benchRedisService(b, "")
	ctx := context.Background()
	record := func(qid string, n int, c Class) {
		now := clk.Now()
		since, _ := svc.window(now)
		if _, _, _, err := svc.Backend.Record(ctx, Result{QueueID: qid, RcptHash: fmt.Sprint(n), Class: c, Egress: "192.0.2.10"}, now, since, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	_, _ = svc.Backend.Remember(ctx, "F", Message{Customer: "acme"}, 100*time.Hour)
	clk.Set(t0.Add(-24 * time.Hour))
	n := 0
	for clk.Now().Before(t0) {
		for _, c := range []Class{Sent, Sent, HardBounce, Deferred} {
			n++
			record("F", n, c)
		}
		clk.Advance(time.Hour)
	}
	clk.Set(t0)
	record("F", -1, Sent) // the hour's first result
	before := testenv.CommandStats(b, h.Client)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		record("F", i, Sent)
	}
	b.StopTimer()
	reportStore(b, before, testenv.CommandStats(b, h.Client))
}

// reportStore reports the Redis commands per op and the scripts' server
// time per op between two readings of INFO commandstats.
func reportStore(b *testing.B, before, after map[string]testenv.CommandStat) {
	b.Helper()
	var cmds int64
	for k, st := range after {
		cmds += st.Calls - before[k].Calls
	}
	b.ReportMetric(float64(cmds)/float64(b.N), "redis-cmds/op")
	b.ReportMetric(float64(after["evalsha"].Usec-before["evalsha"].Usec)/float64(b.N), "script-µs/op")
}

// benchRedisService is the reputation service with config extra on a
// private Redis, driven by a fake clock at t0.
func benchRedisService(b *testing.B, extra string) (*store.Handle, *Service, *clock.Fake) {
	b.Helper()
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	clk := clock.NewFake(t0)
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "b:", DialTimeout: time.Second}}, clk)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	svc, err := NewService(h, testConfig(b, extra), testKey, clk, nil)
	if err != nil {
		b.Fatal(err)
	}
	return h, svc, clk
}
