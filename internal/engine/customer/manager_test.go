package customer

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

const baseYAML = `
customers:
  - id: acme
    logins: [acme]
    networks: [192.0.2.0/24]
    domains: [acme.example]
`

func stores(t *testing.T) map[string]func() *store.Handle {
	return map[string]func() *store.Handle{
		"memory": func() *store.Handle {
			h, err := store.Open(config.StoreConfig{Backend: "memory", Path: t.TempDir()}, clock.System{})
			if err != nil {
				t.Fatal(err)
			}
			return h
		},
		"redis": func() *store.Handle {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 2e9, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, clock.System{})
			if err != nil {
				t.Fatal(err)
			}
			return h
		},
	}
}

func TestManager(t *testing.T) {
	base, err := config.Parse([]byte(baseYAML), "base.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			h := open()
			defer h.Close()
			s, err := OpenStore(h)
			if err != nil {
				t.Fatal(err)
			}
			m := NewManager(s, base, config.Options{}, nil)
			other := NewManager(s, base, config.Options{}, nil) // a second gateway
			if _, err := other.Sync(ctx); err != nil {
				t.Fatal(err)
			}

			t.Run("validation names the field, nothing written", func(t *testing.T) {
				bad := config.Customer{ID: "bad", Logins: []string{"acme", "[x"}, Networks: []string{"192.0.2.0/24", "10.0.0.1/8"}}
				_, err := m.Add(ctx, bad, ViaCLI)
				var ve ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("want ValidationError, got %v", err)
				}
				got := err.Error()
				for _, want := range []string{"logins[0]: login \"acme\" also belongs to customer \"acme\"", "logins[1]: bad login pattern", "networks[1]: bad network", "networks[0]: network 192.0.2.0/24 is already customer \"acme\"'s", "domains: customer \"bad\" lists no sender domains"} {
					if !strings.Contains(got, want) {
						t.Errorf("errors lack %q:\n%s", want, got)
					}
				}
				if v, _ := s.Version(ctx); v != 0 {
					t.Fatalf("version %d after a refused change", v)
				}
			})
			t.Run("add, then a second gateway sees it", func(t *testing.T) {
				c, err := m.Add(ctx, config.Customer{ID: "newco", Logins: []string{"newco-*"}, Networks: []string{"198.51.100.0/24"}, Domains: []string{"newco.example"}}, ViaCLI)
				if err != nil || c.Version != 1 || c.Op != OpAdd {
					t.Fatalf("add: %+v %v", c, err)
				}
				if _, err := m.Add(ctx, config.Customer{ID: "newco", Networks: []string{"203.0.113.1"}, Domains: []string{"x.example"}}, ViaCLI); err == nil {
					t.Fatal("second add of the same id accepted")
				}
				if changed, err := other.Sync(ctx); err != nil || !changed {
					t.Fatalf("sync: %v %v", changed, err)
				}
				cfg, err := other.Effective()
				if err != nil {
					t.Fatal(err)
				}
				d, _ := NewDirectory(cfg)
				if c, by := d.Identify("newco-web", netip.MustParseAddr("203.0.113.9")); c == nil || c.ID != "newco" || by != ByLogin {
					t.Fatalf("second gateway does not identify the new customer: %v", c)
				}
				if mode := cfg.Customers[1].Mode; mode != "enforce" {
					t.Fatalf("mode default not applied: %q", mode)
				}
			})
			t.Run("set on a config customer copies it into the store (store wins)", func(t *testing.T) {
				patch := map[string]any{}
				if err := SetPath(patch, "limits.messages_per_hour", "50", false); err != nil {
					t.Fatal(err)
				}
				if err := SetPath(patch, "mode", "monitor", false); err != nil {
					t.Fatal(err)
				}
				c, err := m.Set(ctx, "acme", patch, ViaAPI)
				if err != nil || strings.Join(c.Fields, ",") != "limits,mode" {
					t.Fatalf("set: %+v %v", c, err)
				}
				e, _ := m.Get("acme")
				if e.Source != SourceStore || !e.Shadows || *e.Customer.Limits.MessagesPerHour != 50 || e.Customer.Logins[0] != "acme" {
					t.Fatalf("after set: %+v", e)
				}
				if _, err := m.Set(ctx, "acme", map[string]any{"limits": map[string]any{"messages_per_hour": -1}}, ViaAPI); err == nil || !strings.Contains(err.Error(), "limits.messages_per_hour") {
					t.Fatalf("negative limit: %v", err)
				}
				if _, err := m.Set(ctx, "acme", map[string]any{"nope": 1}, ViaAPI); err == nil || !strings.Contains(err.Error(), "nope: unknown field") {
					t.Fatalf("unknown field: %v", err)
				}
			})
			t.Run("remove", func(t *testing.T) {
				if _, err := m.Remove(ctx, "nosuch", ViaCLI); !errors.Is(err, ErrNotFound) {
					t.Fatalf("remove unknown: %v", err)
				}
				if _, err := m.Remove(ctx, "newco", ViaCLI); err != nil {
					t.Fatal(err)
				}
				// Removing the store's acme brings the file's back.
				if _, err := m.Remove(ctx, "acme", ViaCLI); err != nil {
					t.Fatal(err)
				}
				if e, _ := m.Get("acme"); e.Source != SourceConfig {
					t.Fatalf("acme after removal: %+v", e)
				}
				if _, err := m.Remove(ctx, "acme", ViaCLI); err == nil || !strings.Contains(err.Error(), "config file") {
					t.Fatalf("removing a file customer: %v", err)
				}
			})
			t.Run("import is all or none", func(t *testing.T) {
				list, err := DecodeList([]byte("customers:\n  - {id: i1, networks: [203.0.113.1], domains: [i1.example]}\n  - {id: i2, networks: [203.0.113.1], domains: [i2.example]}\n"))
				if err != nil {
					t.Fatal(err)
				}
				v0 := m.Version()
				if _, err := m.Import(ctx, list, ViaCLI); err == nil || !strings.Contains(err.Error(), "customer i2: networks[0]") {
					t.Fatalf("conflicting import: %v", err)
				}
				if m.Version() != v0 {
					t.Fatal("a refused import wrote something")
				}
				list[1].Networks = []string{"203.0.113.2"}
				if cs, err := m.Import(ctx, list, ViaCLI); err != nil || cs.Imported != 2 {
					t.Fatalf("import: %v", err)
				}
			})
			t.Run("change log and incremental sync", func(t *testing.T) {
				log, err := m.Log(ctx, "", 100)
				if err != nil || len(log) != 6 {
					t.Fatalf("log: %d %v", len(log), err)
				}
				if log[0].Op != OpImport || log[len(log)-1].Op != OpAdd || log[len(log)-1].Via != ViaCLI {
					t.Fatalf("log order: %+v", log)
				}
				acme, _ := m.Log(ctx, "acme", 100)
				if len(acme) != 2 || acme[0].Op != OpRemove || acme[1].Via != ViaAPI {
					t.Fatalf("acme's log: %+v", acme)
				}
				cs, complete, err := s.Since(ctx, 4)
				if err != nil || !complete || len(cs) != 2 || cs[0].Version != 5 {
					t.Fatalf("since 4: %+v %v %v", cs, complete, err)
				}
				if _, err := other.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if len(other.List()) != len(m.List()) || other.Version() != m.Version() {
					t.Fatalf("second gateway: %d customers v%d, first %d v%d", len(other.List()), other.Version(), len(m.List()), m.Version())
				}
			})
		})
	}
}

// TestMemoryDirectoryPersists: with store.path the directory survives a
// restart of the gateway.
func TestMemoryDirectoryPersists(t *testing.T) {
	dir := t.TempDir()
	base, _ := config.Parse([]byte(baseYAML), "base.yaml", config.Options{})
	open := func() (*Manager, *store.Handle) {
		h, err := store.Open(config.StoreConfig{Backend: "memory", Path: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenStore(h)
		if err != nil {
			t.Fatal(err)
		}
		m := NewManager(s, base, config.Options{}, nil)
		if _, err := m.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m, h
	}
	m, h := open()
	if _, err := m.Add(context.Background(), config.Customer{ID: "kept", Networks: []string{"203.0.113.7"}, Domains: []string{"kept.example"}}, ViaAPI); err != nil {
		t.Fatal(err)
	}
	h.Close()
	m, h = open()
	defer h.Close()
	if e, ok := m.Get("kept"); !ok || e.Source != SourceStore || m.Version() != 1 {
		t.Fatalf("after restart: %+v %v v%d", e, ok, m.Version())
	}
}

// TestManagerAppliesTheDirectoryRules: a change of the live directory
// (add, set, import; on both stores) is held to the rules of the file,
// checked against the other customers whether they come from the file or
// the store: refused with the field and the other customer named, nothing
// written; forced, written with the waived rules in the change log, and
// every gateway syncing it is told (OnForced).
func TestManagerAppliesTheDirectoryRules(t *testing.T) {
	base, err := config.Parse([]byte(baseYAML), "base.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			h := open()
			defer h.Close()
			s, err := OpenStore(h)
			if err != nil {
				t.Fatal(err)
			}
			m := NewManager(s, base, config.Options{}, nil)
			other := NewManager(s, base, config.Options{}, nil) // a second gateway
			var told []Change
			other.OnForced(func(c Change) { told = append(told, c) })
			if _, err := other.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Add(ctx, config.Customer{ID: "store1", Networks: []string{"198.51.100.0/24"}, Domains: []string{"store1.example"}}, ViaAPI); err != nil {
				t.Fatal(err)
			}
			refused := []struct {
				name string
				do   func() error
				want string
			}{
				{"a network inside a file customer's", func() error {
					_, err := m.Add(ctx, config.Customer{ID: "n", Networks: []string{"192.0.2.7/32"}, Domains: []string{"n.example"}}, ViaAPI)
					return err
				}, `customer n: networks[0]: network 192.0.2.7/32 is inside customer "acme"'s network 192.0.2.0/24`},
				{"a network around a store customer's", func() error {
					_, err := m.Add(ctx, config.Customer{ID: "n", Networks: []string{"198.51.0.0/16"}, Domains: []string{"n.example"}}, ViaAPI)
					return err
				}, `customer n: networks[0]: network 198.51.0.0/16 contains customer "store1"'s network 198.51.100.0/24`},
				{"a store customer's domain, by set", func() error {
					_, err := m.Set(ctx, "acme", map[string]any{"domains": []any{"acme.example", "store1.example"}}, ViaCLI)
					return err
				}, `customer acme: domains[1]: domain "store1.example" is customer "store1"'s`},
				{"a catch-all login, by import", func() error {
					_, err := m.Import(ctx, []config.Customer{{ID: "n", Logins: []string{"*@*"}, Domains: []string{"n.example"}}}, ViaAPI)
					return err
				}, `customer n: logins[0]: login pattern "*@*" is a catch-all`},
				{"::/0", func() error {
					_, err := m.Add(ctx, config.Customer{ID: "n", Networks: []string{"::/0"}, Domains: []string{"n.example"}}, ViaAPI)
					return err
				}, "broader than directory.max_network_prefix.ipv6 (/32)"},
				{"NUL in a login", func() error {
					_, err := m.Add(ctx, config.Customer{ID: "n", Logins: []string{"n\x00"}, Domains: []string{"n.example"}}, ViaAPI)
					return err
				}, "control character U+0000"},
			}
			for _, tc := range refused {
				t.Run(tc.name, func(t *testing.T) {
					v := m.Version()
					err := tc.do()
					var ve ValidationError
					if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("err = %v; want a ValidationError containing %q", err, tc.want)
					}
					if _, err := m.Sync(ctx); err != nil || m.Version() != v {
						t.Fatalf("something was written: version %d -> %d (%v)", v, m.Version(), err)
					}
				})
			}
			ch, err := m.Add(ctx, config.Customer{ID: "reseller-sub", Force: true, Networks: []string{"192.0.2.7/32"}, Logins: []string{"*"}, Domains: []string{"sub.example"}}, ViaAPI)
			if err != nil {
				t.Fatalf("forced: %v", err)
			}
			want := []string{`logins[0]: forced: login pattern "*" is a catch-all: it matches every login`,
				`networks[0]: forced: network 192.0.2.7/32 is inside customer "acme"'s network 192.0.2.0/24`}
			if strings.Join(ch.Forced, "\n") != strings.Join(want, "\n") {
				t.Fatalf("change.Forced:\n%s\nwant:\n%s", strings.Join(ch.Forced, "\n"), strings.Join(want, "\n"))
			}
			log, err := m.Log(ctx, "reseller-sub", 5)
			if err != nil || len(log) != 1 || len(log[0].Forced) != 2 {
				t.Fatalf("change log: %+v, %v", log, err)
			}
			if _, err := other.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if len(told) != 1 || told[0].ID != "reseller-sub" || len(told[0].Forced) != 2 {
				t.Fatalf("the other gateway was told %+v", told)
			}
			// The forced entry stays valid for every gateway's directory.
			if _, err := other.Effective(); err != nil {
				t.Fatalf("the other gateway's directory: %v", err)
			}
			cfg, err := m.Effective()
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewDirectory(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c, _ := d.Identify("", netip.MustParseAddr("192.0.2.7")); c == nil || c.ID != "reseller-sub" {
				t.Fatalf("192.0.2.7 = %v; want the longest prefix, reseller-sub", c)
			}
		})
	}
}
