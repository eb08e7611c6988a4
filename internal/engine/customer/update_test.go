package customer

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

// TestDirectoryUpdateMatchesRebuild changes a directory step by step
// (through the manager, as live changes arrive) and checks after each
// step that the updated directory identifies every probe like one built
// from scratch, and that the previous directory (still judging the
// messages under way) answers as before.
func TestDirectoryUpdateMatchesRebuild(t *testing.T) {
	base, err := config.Parse([]byte(`
customers:
  - id: a
    logins: [a1, "shared-*", "*@a.example"]
    networks: [10.1.0.0/16]
    domains: [a.example]
  - id: b
    force: true # 10.1.2.0/24 is inside a's /16 by design
    logins: [b1, "shared-b*"]
    networks: [10.1.2.0/24, "2001:db8:b::/48"]
    domains: [b.example]
  - id: c
    logins: [c1, "c-?"]
    networks: [10.3.0.0/16]
    domains: [c.example]
`), "base.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(config.StoreConfig{Backend: "memory"}, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, _ := OpenStore(h)
	m := NewManager(s, base, config.Options{}, nil)
	ctx := context.Background()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, changed, err := m.EffectiveUpdate()
	if err != nil || changed != nil {
		t.Fatalf("first effective: %v, changed %v", err, changed)
	}
	dir, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logins := []string{"", "a1", "b1", "c1", "d1", "e1", "shared-x", "shared-bx", "x@a.example", "c-1", "c-12", "d-x", "zz", "e-1", "shared-e"}
	addrs := []string{"10.1.0.1", "10.1.2.3", "10.3.4.5", "10.4.0.1", "10.5.0.1", "2001:db8:b::1", "2001:db8:e::1", "192.0.2.1"}
	answers := func(d *Directory) map[string]string {
		out := map[string]string{}
		for _, l := range logins {
			for _, a := range addrs {
				c, by := d.Identify(l, netip.MustParseAddr(a))
				id := "-"
				if c != nil {
					id = c.ID
				}
				out[l+" "+a] = id + " " + by
			}
		}
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			if c, ok := d.ByID(id); ok {
				out["get "+id] = fmt.Sprint(c.ID, c.Mode, len(c.Domains))
			}
		}
		var ids []string
		for _, c := range d.All() {
			ids = append(ids, c.ID)
		}
		out["all"] = fmt.Sprint(ids)
		return out
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"add a store customer with a glob and a more specific network", func() error {
			_, err := m.Add(ctx, config.Customer{ID: "d", Force: true, Logins: []string{"d1", "d-*", "shared-e*"}, Networks: []string{"10.4.0.0/16", "10.1.2.128/25"}, Domains: []string{"d.example"}}, ViaCLI)
			return err
		}},
		{"change a file customer's logins and networks", func() error {
			_, err := m.Set(ctx, "b", map[string]any{"logins": []any{"b1", "e-*"}, "networks": []any{"10.1.2.0/24", "2001:db8:e::/48"}, "mode": "monitor"}, ViaCLI)
			return err
		}},
		{"a customer takes a freed network and a login", func() error {
			_, err := m.Add(ctx, config.Customer{ID: "e", Logins: []string{"e1", "shared-bx"}, Networks: []string{"2001:db8:b::/48"}, Domains: []string{"e.example"}}, ViaCLI)
			return err
		}},
		{"remove a file customer's store definition", func() error {
			_, err := m.Remove(ctx, "b", ViaCLI)
			if err == nil {
				return fmt.Errorf("removing b should be refused: its file definition's network is e's now")
			}
			_, err = m.Set(ctx, "e", map[string]any{"networks": []any{"10.5.0.0/16"}, "logins": []any{"e1"}}, ViaCLI)
			if err != nil {
				return err
			}
			_, err = m.Remove(ctx, "b", ViaCLI)
			return err
		}},
		{"remove a store customer", func() error {
			_, err := m.Remove(ctx, "d", ViaCLI)
			return err
		}},
		{"change the first customer", func() error {
			_, err := m.Set(ctx, "a", map[string]any{"logins": []any{"a1", "d-*"}}, ViaCLI)
			return err
		}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		before := answers(dir)
		// Another reader of the effective config (the console, the API)
		// must not swallow the changes the index update needs.
		if _, err := m.Effective(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		cfg, changed, err := m.EffectiveUpdate()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if len(changed) == 0 {
			t.Fatalf("%s: nothing changed?", st.name)
		}
		upd, err := dir.Update(cfg, changed)
		if err != nil {
			t.Fatalf("%s: update: %v", st.name, err)
		}
		full, err := NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, want := answers(upd), answers(full)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s: updated %q, rebuilt %q", st.name, k, got[k], v)
			}
		}
		for k, v := range answers(dir) {
			if before[k] != v {
				t.Errorf("%s: the previous directory changed: %s: %q, was %q", st.name, k, v, before[k])
			}
		}
		dir = upd
	}
}
