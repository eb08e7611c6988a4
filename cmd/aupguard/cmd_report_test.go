package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// recordSome writes decisions through a recorder on the store the config
// names (as the gateway would) and closes it.
func recordSome(t *testing.T, cfgPath string) {
	t.Helper()
	cfg, err := config.Load(cfgPath, gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := events.New(h, cfg.Events, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, d := range []*gateway.Decision{
		{Time: now.Add(-2 * time.Hour), Stage: gateway.StageEOM, Ref: "OKOKOKOK22", QueueID: "4XyZ1", Customer: "acme", SenderDomain: "acme.example", Rcpts: 1, Size: 900,
			Action: policy.Accept, Effective: policy.Accept, Mode: "enforce", RcptHashes: []string{"h1"}},
		{Time: now.Add(-time.Hour), Stage: gateway.StageEOM, Ref: "REJECTED22", QueueID: "4XyZ2", Customer: "acme", SenderDomain: "acme.example", Rcpts: 2, Size: 1200,
			Action: policy.Reject, Effective: policy.Reject, Check: "sender_identity", Finding: "from_domain_not_owned", Code: 550, Enhanced: "5.7.1", Mode: "enforce",
			Detail: "From ceo@bank.example", RcptHashes: []string{"h2", "h3"},
			Results: []policy.Result{{Check: "sender_identity", Finding: policy.Finding{Name: "from_domain_not_owned", Attrs: map[string]string{"domain": "bank.example"}}, Action: policy.Reject}}},
	} {
		rec.Observe(d)
	}
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestEventsAndReportCommands(t *testing.T) {
	kinds := map[string]func(t *testing.T, dir string) string{
		"memory": func(t *testing.T, dir string) string { return "store: {backend: memory, path: " + dir + "}\n" },
		"redis": func(t *testing.T, dir string) string {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			return "store: {backend: redis, redis: {addrs: [\"" + r.Addr() + "\"]}}\n"
		},
	}
	for name, storeYAML := range kinds {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "aupguard.yaml")
			y := storeYAML(t, dir) + `
customers:
  - id: acme
    name: Acme Corp
    networks: [192.0.2.1]
    domains: [acme.example]
`
			if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			recordSome(t, path)

			t.Run("events by ref", func(t *testing.T) {
				code, out, errs := run(t, "events", "-config", path, "-ref", "rejected22")
				if code != 0 || !strings.Contains(out, "REJECTED22") || !strings.Contains(out, "sender_identity/from_domain_not_owned") ||
					!strings.Contains(out, "550 5.7.1") || !strings.Contains(out, "detail: From ceo@bank.example") ||
					!strings.Contains(out, "finding sender_identity/from_domain_not_owned = reject domain=bank.example") ||
					!strings.Contains(out, "recipient hashes: h2, h3") || strings.Contains(out, "OKOKOKOK22") {
					t.Fatalf("%d\n%s\n%s", code, out, errs)
				}
			})
			t.Run("events unknown ref", func(t *testing.T) {
				if code, _, errs := run(t, "events", "-config", path, "-ref", "NOSUCHREF2"); code != 1 || !strings.Contains(errs, "no matching event") {
					t.Fatalf("%d %s", code, errs)
				}
			})
			t.Run("events json by customer", func(t *testing.T) {
				code, out, errs := run(t, "events", "-config", path, "-customer", "acme", "-since", "24h", "-json")
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if code != 0 || len(lines) != 2 {
					t.Fatalf("%d %q %s", code, out, errs)
				}
				var e events.Event
				if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Ref != "REJECTED22" {
					t.Fatalf("%v %+v", err, e)
				}
			})
			t.Run("report text", func(t *testing.T) {
				code, out, errs := run(t, "report", "-config", path, "-since", "24h")
				if code != 0 || !strings.Contains(out, "Messages     2 (3 recipients") || !strings.Contains(out, "Rejected     1") ||
					!strings.Contains(out, "sender_identity") {
					t.Fatalf("%d\n%s\n%s", code, out, errs)
				}
			})
			t.Run("report html to file", func(t *testing.T) {
				file := filepath.Join(dir, "r.html")
				code, _, errs := run(t, "report", "-config", path, "-customer", "acme", "-format", "html", "-o", file)
				b, _ := os.ReadFile(file)
				if code != 0 || !strings.Contains(string(b), `<svg id="volume-chart"`) || !strings.Contains(string(b), "customer acme") {
					t.Fatalf("%d %s %.200s", code, errs, b)
				}
			})
			t.Run("report csv", func(t *testing.T) {
				code, out, _ := run(t, "report", "-config", path, "-from", time.Now().UTC().Add(-24*time.Hour).Format("2006-01-02"), "-format", "csv")
				if code != 0 || !strings.Contains(out, "\nacme,Acme Corp,2,3,2100,1,0,0,1,") {
					t.Fatalf("%d %s", code, out)
				}
			})
			t.Run("bad arguments", func(t *testing.T) {
				for _, args := range [][]string{
					{"report", "-config", path, "-format", "pdf"},
					{"report", "-config", path, "-since", "1h", "-from", "2026-01-01"},
					{"events", "-config", path, "-since", "yesterday"},
				} {
					if code, _, _ := run(t, args...); code != 2 {
						t.Errorf("%v: exit %d, want 2", args, code)
					}
				}
			})
			t.Run("mail dry run", func(t *testing.T) {
				b, _ := os.ReadFile(path)
				mp := filepath.Join(dir, "mail.yaml")
				os.WriteFile(mp, append([]byte("provider: {postmaster: postmaster@provider.example}\n"), b...), 0o600)
				code, out, errs := run(t, "report", "-config", mp, "-mail", "-n")
				if code != 0 || !strings.Contains(out, "postmaster@provider.example: [aupguard] daily summary") {
					t.Fatalf("%d %s %s", code, out, errs)
				}
			})
		})
	}
	t.Run("memory without file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "aupguard.yaml")
		os.WriteFile(path, []byte("customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"), 0o600)
		if code, _, errs := run(t, "events", "-config", path); code != 1 || !strings.Contains(errs, "admin API") {
			t.Fatalf("%d %s", code, errs)
		}
	})
}
