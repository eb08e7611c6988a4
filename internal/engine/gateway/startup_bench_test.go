package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/testkit/custgen"
)

// BenchmarkStartup100k is a gateway's start with 100,000 customers in its
// config file (one login, one login glob, one network and one domain
// each, custgen): the file parsed and validated, the live directory
// merged (memory store), the identification index and every check of the
// chain built, as daemon.New does before it listens. It reports the time
// to ready and the memory the running State keeps per customer (the heap
// in use after a collection, the State alive, less the heap before).
//
//	go test -run '^$' -bench Startup100k -benchtime 1x ./internal/engine/gateway/
func BenchmarkStartup100k(b *testing.B) {
	const n = 100_000
	var buf bytes.Buffer
	if err := custgen.Config(&buf, custgen.Options{Customers: n, Store: "backend: memory"}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.ResetTimer()
	var total time.Duration
	var perCustomer float64
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		st := startState(b, data)
		total += time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		perCustomer = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / n
		if c, _ := st.Dir.Identify("c99999", netip.Addr{}); c == nil || c.ID != "c99999" {
			b.Fatalf("the last customer is not identified by its login: %v", c)
		}
		if c, _ := st.Dir.Identify("", netip.MustParseAddr(custgen.Addr(4242))); c == nil || c.ID != "c4242" {
			b.Fatalf("a customer is not identified by its network: %v", c)
		}
		runtime.KeepAlive(st)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/ready")
	b.ReportMetric(perCustomer, "B/customer")
}

// startState is daemon.New's way to a State, without the listeners.
func startState(b *testing.B, data []byte) *State {
	b.Helper()
	cfg, err := config.Parse(data, "gen.yaml", ConfigOptions())
	if err != nil {
		b.Fatal(err)
	}
	deps, err := OpenDeps(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { deps.Store.Close() })
	s, err := customer.OpenStore(deps.Store)
	if err != nil {
		b.Fatal(err)
	}
	m := customer.NewManager(s, cfg, ConfigOptions(), nil)
	if _, err := m.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	eff, _, err := m.EffectiveUpdate()
	if err != nil {
		b.Fatal(err)
	}
	st, err := Build(deps.WithConfig(eff))
	if err != nil {
		b.Fatal(err)
	}
	return st
}
