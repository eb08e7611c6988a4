package customer

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/custgen"
)

// BenchmarkLoadConfig parses, validates and indexes a generated config of
// 10,000 customers (the whole start-up path of the customer list but the
// checks); it grows linearly: see docs/performance.md for 100,000.
func BenchmarkLoadConfig(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var buf bytes.Buffer
			if err := custgen.Config(&buf, custgen.Options{Customers: n}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg, err := config.Parse(buf.Bytes(), "gen.yaml", config.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := NewDirectory(cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/customer")
		})
	}
}

// BenchmarkDirectoryChange is the work of one live change at 100,000
// customers and 1,000,000 logins: validating the change against the
// ownership maps (on the gateway that takes it), then on every gateway
// the effective config (only the changed customer validated) and the
// identification index updated from the running one (Directory.Update).
// The checks' own per-customer settings are rebuilt by gateway.Build;
// docs/performance.md has the whole.
//
//	go test -run '^$' -bench DirectoryChange -benchtime 3x ./customer/
func BenchmarkDirectoryChange(b *testing.B) {
	cfg := scaleConfig(100_000, 9)
	for i := range cfg.Customers {
		cfg.Customers[i].Mode = "enforce"
	}
	cfg.Defaults.Mode = "enforce"
	h, err := store.Open(config.StoreConfig{Backend: "memory"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	s, _ := OpenStore(h)
	m := NewManager(s, cfg, config.Options{}, nil)
	ctx := context.Background()
	if _, err := m.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	// As at a gateway's start: the first effective config is validated
	// whole; each change after it costs the changed customer.
	eff, _, err := m.EffectiveUpdate()
	if err != nil {
		b.Fatal(err)
	}
	dir, err := NewDirectory(eff)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "live" + strconv.Itoa(i)
		if _, err := m.Add(ctx, config.Customer{ID: id, Networks: []string{"192.0.2." + strconv.Itoa(i%250)}, Domains: []string{id + ".example"}}, ViaCLI); err != nil {
			b.Fatal(err)
		}
		eff, changed, err := m.EffectiveUpdate()
		if err != nil {
			b.Fatal(err)
		}
		if dir, err = dir.Update(eff, changed); err != nil {
			b.Fatal(err)
		}
	}
}
