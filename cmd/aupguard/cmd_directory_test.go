package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/observability/admin"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestCustomerCommandThroughAdminAPI runs `aupguard customer` against a
// running admin server (the memory store lives in the gateway, so the
// command goes through its API with the bearer token): every write
// (add, set, import in YAML and JSON, remove) passes the cross-site
// guard and is applied; none is refused.
func TestCustomerCommandThroughAdminAPI(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("cli-admin-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	y := "admin: {listen: " + ln.Addr().String() + ", token_file: " + tok + "}\n" +
		"customers:\n  - {id: acme, networks: [192.0.2.0/24], domains: [acme.example]}\n"
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cs, err := customer.OpenStore(h)
	if err != nil {
		t.Fatal(err)
	}
	m := customer.NewManager(cs, cfg, gateway.ConfigOptions(), clock.System{})
	var log testenv.LogBuffer
	srv, err := admin.New(admin.Options{Config: cfg, Store: h, Directory: m, Listener: ln,
		Logger: slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	yamlFile := filepath.Join(dir, "import.yaml")
	os.WriteFile(yamlFile, []byte("customers:\n  - {id: y1, networks: [10.0.1.0/24], domains: [y1.example]}\n"), 0o600)
	jsonFile := filepath.Join(dir, "import.json")
	os.WriteFile(jsonFile, []byte(`{"customers": [{"id": "j1", "networks": ["10.0.2.0/24"], "domains": ["j1.example"]}]}`), 0o600)
	run := func(sub string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runDirectoryCommand(sub, append(args, "-config", cfgPath), &out, &errb); code != 0 {
			t.Fatalf("customer %s %v: exit %d\n%s%s\nserver log:\n%s", sub, args, code, out.String(), errb.String(), log.String())
		}
		return out.String()
	}
	run("add", "newco", "-set", "networks=[203.0.113.0/24]", "-set", "domains=[newco.example]")
	if _, ok := m.Get("newco"); !ok {
		t.Fatal("add: newco not in the directory")
	}
	run("set", "newco", "-set", "name=New Co")
	if e, _ := m.Get("newco"); e.Customer.Name != "New Co" {
		t.Fatalf("set: name %q", e.Customer.Name)
	}
	if out := run("import", "-f", yamlFile); !strings.Contains(out, "imported 1") {
		t.Fatalf("YAML import: %s", out)
	}
	if out := run("import", "-f", jsonFile); !strings.Contains(out, "imported 1") {
		t.Fatalf("JSON import: %s", out)
	}
	for _, id := range []string{"y1", "j1"} {
		if _, ok := m.Get(id); !ok {
			t.Fatalf("import: %s not in the directory", id)
		}
	}
	run("remove", "newco")
	if _, ok := m.Get("newco"); ok {
		t.Fatal("remove: newco still there")
	}
	if out := run("history", "newco"); !strings.Contains(out, "remove") || !strings.Contains(out, "add") {
		t.Fatalf("history: %s", out)
	}
	if out := run("list"); !strings.Contains(out, "y1") || !strings.Contains(out, "acme") {
		t.Fatalf("list: %s", out)
	}
	if strings.Contains(log.String(), "admin request refused") {
		t.Fatalf("the guard refused a request of the command:\n%s", log.String())
	}
}
