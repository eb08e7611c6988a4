package events

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// BenchmarkSession measures one whole message through the gateway engine
// (real chain, memory store) without an observer, and with the recorder on
// the memory or Redis store: recording must not change the milter's
// latency measurably (compare ns/op).
func BenchmarkSession(b *testing.B) {
	const y = `
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
`
	for _, kind := range []string{"none", "memory", "redis"} {
		b.Run(kind, func(b *testing.B) {
			cfg, err := config.Parse([]byte(y), "b.yaml", gateway.ConfigOptions())
			if err != nil {
				b.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			deps, err := gateway.OpenDeps(cfg, clock.System{}, log)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { deps.Store.Close() })
			st, err := gateway.Build(deps)
			if err != nil {
				b.Fatal(err)
			}
			var obs []gateway.Observer
			var rec *Recorder
			if kind != "none" {
				h := deps.Store
				if kind == "redis" {
					rs := testenv.StartRedis(b, testenv.RedisOptions{})
					h = redisHandle(b, rs.Addr(), clock.System{})
				}
				ecfg := cfg.Events
				ecfg.File = "off"
				// A small ring is in its steady state (full, no growth)
				// within the benchmark, as a long-running gateway is.
				ecfg.Ring = 1000
				if rec, err = New(h, ecfg, nil); err != nil {
					b.Fatal(err)
				}
				obs = append(obs, rec)
			}
			eng := gateway.NewEngine(st, clock.System{}, log, obs...)
			b.Cleanup(eng.Close)
			client := netip.MustParseAddr("192.0.2.10")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := eng.NewSession()
				s.Connect("c.example", client)
				s.Mail(ctx, "news@acme.example", "", "")
				s.Rcpt(ctx, "a@receiver.example", "")
				s.Header("From", " news@acme.example")
				s.Header("To", " a@receiver.example")
				s.Header("Subject", " hello")
				s.EndOfHeaders()
				s.Body([]byte("Hello.\r\n"))
				s.EndOfMessage(ctx, "Q1")
				s.Close()
			}
			b.StopTimer()
			if rec != nil {
				b.ReportMetric(float64(rec.Dropped()), "dropped")
			}
		})
	}
}
