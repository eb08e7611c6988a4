package customer

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// TestIncrementalMatchesFull makes a series of changes and checks, after
// each, that the incrementally validated effective config is the one a
// whole validation of the merged list gives, on both store backends.
func TestIncrementalMatchesFull(t *testing.T) {
	base, err := config.Parse([]byte(baseYAML+`
  - id: beta
    logins: [beta, "beta-*"]
    networks: [198.51.100.0/24]
    domains: [beta.example]
defaults: {mode: monitor}
`), "base.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			h := open()
			defer h.Close()
			s, _ := OpenStore(h)
			m := NewManager(s, base, config.Options{}, nil)
			gw := NewManager(s, base, config.Options{}, nil) // another gateway, synced from the store
			if _, err := gw.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := gw.Effective(); err != nil {
				t.Fatal(err)
			}
			check := func(step string) {
				t.Helper()
				for _, mg := range []*Manager{m, gw} {
					if _, err := mg.Sync(ctx); err != nil {
						t.Fatal(err)
					}
					got, err := mg.Effective()
					if err != nil {
						t.Fatalf("%s: %v", step, err)
					}
					mg.mu.Lock()
					list, _ := mg.merged(mg.live)
					mg.mu.Unlock()
					want, err := base.WithCustomers(list, config.Options{})
					if err != nil {
						t.Fatalf("%s: full validation: %v", step, err)
					}
					if !reflect.DeepEqual(got.Customers, want.Customers) {
						t.Fatalf("%s: incremental customers\n%+v\nwant\n%+v", step, got.Customers, want.Customers)
					}
				}
			}
			check("start")
			mustChange := func(step string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				check(step)
			}
			_, err := m.Add(ctx, config.Customer{ID: "new1", Logins: []string{"n1"}, Networks: []string{"203.0.113.0/28"}, Domains: []string{"n1.example"}}, ViaCLI)
			mustChange("add", err)
			_, err = m.Set(ctx, "acme", map[string]any{"logins": []any{"acme", "acme2"}, "mode": "enforce"}, ViaAPI)
			mustChange("set a file customer", err)
			_, err = m.Set(ctx, "new1", map[string]any{"networks": []any{"203.0.113.16/28"}}, ViaAPI)
			mustChange("set a store customer", err)
			// The login the store's new1 gave up is free again, and acme2
			// is taken: the ownership maps follow the changes.
			if _, err := m.Add(ctx, config.Customer{ID: "new2", Logins: []string{"acme2"}, Networks: []string{"203.0.113.0/28"}, Domains: []string{"n2.example"}}, ViaCLI); err == nil || !strings.Contains(err.Error(), `login "acme2" also belongs to customer "acme"`) {
				t.Fatalf("taken login: %v", err)
			}
			_, err = m.Add(ctx, config.Customer{ID: "new2", Logins: []string{"n2"}, Networks: []string{"203.0.113.0/28"}, Domains: []string{"n2.example"}}, ViaCLI)
			mustChange("add on a freed network", err)
			_, err = m.Remove(ctx, "acme", ViaCLI)
			mustChange("remove a store definition that shadows the file's", err)
			_, err = m.Import(ctx, []config.Customer{
				{ID: "new1", Logins: []string{"x1"}, Networks: []string{"203.0.113.64/28"}, Domains: []string{"n1.example"}},
				{ID: "new3", Logins: []string{"n1"}, Networks: []string{"203.0.113.16/28"}, Domains: []string{"n3.example"}},
			}, ViaCLI)
			mustChange("import swapping a login and a network between customers", err)
			_, err = m.Remove(ctx, "new2", ViaCLI)
			mustChange("remove a store customer", err)
		})
	}
}

// TestIncrementalFindsConflicts: a gateway whose file claims what another
// gateway's store customer claims refuses the directory (and keeps its
// running one), naming both; a removal that would bring back a file
// definition claiming another customer's login is refused.
func TestIncrementalFindsConflicts(t *testing.T) {
	base, err := config.Parse([]byte(baseYAML), "base.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := config.Parse([]byte("customers: []\n"), "empty.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			h := open()
			defer h.Close()
			s, _ := OpenStore(h)
			a := NewManager(s, base, config.Options{}, nil)
			b := NewManager(s, empty, config.Options{}, nil)
			for _, mg := range []*Manager{a, b} {
				if _, err := mg.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := mg.Effective(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := b.Add(ctx, config.Customer{ID: "other", Logins: []string{"acme"}, Networks: []string{"203.0.113.0/24"}, Domains: []string{"o.example"}}, ViaCLI); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			_, err := a.Effective()
			if err == nil || !strings.Contains(err.Error(), `customer other: logins[0]: login "acme" also belongs to customer "acme"`) {
				t.Fatalf("conflict not found: %v", err)
			}
			// Still refused on the next look (the change stays pending).
			if _, err := a.Effective(); err == nil {
				t.Fatal("conflict forgotten")
			}
			if _, err := b.Remove(ctx, "other", ViaCLI); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Effective(); err != nil {
				t.Fatalf("after the removal: %v", err)
			}
			// A store definition of acme gives up its login; someone
			// takes it; removing the store definition would bring the
			// file's back with the taken login.
			if _, err := a.Set(ctx, "acme", map[string]any{"logins": []any{"acme-new"}}, ViaCLI); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Add(ctx, config.Customer{ID: "taker", Logins: []string{"acme"}, Networks: []string{"203.0.113.0/24"}, Domains: []string{"t.example"}}, ViaCLI); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Remove(ctx, "acme", ViaCLI); err == nil || !strings.Contains(err.Error(), `login "acme" also belongs to customer "taker"`) {
				t.Fatalf("removal bringing back a conflicting file definition: %v", err)
			}
		})
	}
}
