package optout

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

var testKey = secrets.Key("0123456789abcdef-test-secret")

const testBase = "https://unsub.provider.example/u/"

// testConfig is a config with two customers; extra YAML is appended.
func testConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	y := `
optout:
  keep_plain: true
  unsubscribe:
    base_url: ` + testBase + `
  escalation:
    threshold: 3
    window: 24h
  complaints:
    min_delivered: 100
bulk:
  fingerprint_recipients: 50
customers:
  - id: acme
    networks: [192.0.2.10]
    domains: [acme.example, shop.example]
    unsubscribe: add
  - id: beta
    networks: [192.0.2.11]
    domains: [beta.example, "*.beta.example"]
` + extra
	cfg, err := config.Parse([]byte(y), "test.yaml", sectionOpts)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	testCustomers = cfg.Customers
	return cfg
}

// testCustomers are the customers of the config testConfig made last:
// txn gives a message's customer its settings from them, as the gateway's
// directory does (the package's tests do not run in parallel).
var testCustomers []config.Customer

// svcKinds returns a fresh service on each backend kind.
func svcKinds(t *testing.T, cfg *config.Config, clk clock.Clock) map[string]func(t *testing.T) *Service {
	mk := func(t *testing.T, h *store.Handle) *Service {
		s, err := NewService(h, cfg, testKey, clk, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := s.Backend.(*memory); ok {
			t.Cleanup(func() { m.Close() })
		}
		return s
	}
	return map[string]func(t *testing.T) *Service{
		"memory": func(t *testing.T) *Service {
			h, err := store.Open(config.StoreConfig{Backend: "memory", Path: t.TempDir()}, clk)
			if err != nil {
				t.Fatal(err)
			}
			return mk(t, h)
		},
		"redis": func(t *testing.T) *Service {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
				Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, clk)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			return mk(t, h)
		},
	}
}

var placeholder = regexp.MustCompile(`\{\{(STAMP|TOKEN|BASE64|BASEURL):?([^}]*)\}\}`)

// fixture reads a testdata file and fills in what needs the test key:
// {{STAMP:cust[:rcpt[:ref]]}}, {{TOKEN:cust:rcpt}}, {{BASEURL}} and {{BASE64:file}}
// (another testdata file, base64 in 76-column lines).
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out := placeholder.ReplaceAllFunc(b, func(m []byte) []byte {
		p := placeholder.FindSubmatch(m)
		arg := string(p[2])
		switch string(p[1]) {
		case "STAMP":
			// STAMP:cust[:rcpt[:ref]]: a one-recipient message's stamp
			// (rcpt), or a multi-recipient one's (no rcpt).
			f := strings.SplitN(arg, ":", 3)
			rcpt, ref := "", "REF1"
			if len(f) > 1 {
				rcpt = strings.ToLower(f[1])
			}
			if len(f) > 2 {
				ref = f[2]
			}
			return []byte(Stamp(testKey, f[0], ref, rcpt, t0))
		case "TOKEN":
			c, r, _ := strings.Cut(arg, ":")
			return []byte(NewToken(testKey, c, strings.ToLower(r), t0))
		case "BASEURL":
			return []byte(testBase)
		case "BASE64":
			inner := fixture(t, filepath.Join(filepath.Dir(name), arg+".txt"))
			inner = bytes.ReplaceAll(inner, []byte("\n"), []byte("\r\n"))
			enc := base64.StdEncoding.EncodeToString(inner)
			var lines []string
			for len(enc) > 76 {
				lines = append(lines, enc[:76])
				enc = enc[76:]
			}
			return []byte(strings.Join(append(lines, enc), "\n"))
		}
		return m
	})
	return out
}

var bg = context.Background()

// benchService opens a fresh service for a benchmark.
func benchService(b *testing.B, kind string, cfg *config.Config) *Service {
	var h *store.Handle
	var err error
	if kind == "redis" {
		r := testenv.StartRedis(b, testenv.RedisOptions{})
		h, err = store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
			Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, nil)
	} else {
		h, err = store.Open(config.StoreConfig{Backend: "memory", Path: b.TempDir()}, nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewService(h, cfg, testKey, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if m, ok := s.Backend.(*memory); ok {
			m.Close()
		}
		h.Close()
	})
	return s
}
