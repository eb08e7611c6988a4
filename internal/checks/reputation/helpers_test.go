package reputation

import (
	"log/slog"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

var testKey = secrets.Key("0123456789abcdef-test-secret")

// t0 is the tests' start time: mid-hour, so that hourly buckets are not
// all one.
var t0 = time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)

// testConfig parses a config for the tests: three customers and extra YAML.
func testConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	y := `
customers:
  - {id: acme, name: ACME, networks: [192.0.2.1], domains: [acme.example]}
  - {id: beta, networks: [192.0.2.2], domains: [beta.example]}
  - {id: gamma, networks: [192.0.2.3], domains: [gamma.example]}
` + extra
	cfg, err := config.Parse([]byte(y), "test.yaml", config.Options{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// backend is one store flavour under test.
type backend struct {
	name string
	open func(t *testing.T, clk clock.Clock) *store.Handle
}

// backends returns the memory backend and a real Redis.
func backends() []backend {
	return []backend{
		{"memory", func(t *testing.T, clk clock.Clock) *store.Handle {
			h, err := store.Open(config.StoreConfig{Backend: "memory", Path: t.TempDir()}, clk)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return h
		}},
		{"redis", func(t *testing.T, clk clock.Clock) *store.Handle {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
				Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:", DialTimeout: time.Second}}, clk)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return h
		}},
		{"cluster", func(t *testing.T, clk clock.Clock) *store.Handle {
			rc := testenv.StartRedisCluster(t)
			h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
				Redis: config.RedisConfig{Addrs: rc.Addrs(), Cluster: true, KeyPrefix: "t:", DialTimeout: time.Second}}, clk)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return h
		}},
	}
}

func newTestService(t *testing.T, h *store.Handle, cfg *config.Config, clk clock.Clock, log *slog.Logger) *Service {
	t.Helper()
	s, err := NewService(h, cfg, testKey, clk, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
