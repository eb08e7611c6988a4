package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/ratelimit"
)

// TestRebindKeepsTheChecksUnlessAFamilyNeedsThem pins what a live
// directory change costs the chain: a customer's changed limits reach the
// checks through the customer (the chain is kept), an added customer is
// identified and known to the directory in force, and a customer with a
// signing key makes the chain be built anew (auth holds the keys).
func TestRebindKeepsTheChecksUnlessAFamilyNeedsThem(t *testing.T) {
	const y = "store: {backend: memory}\ncustomers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n    limits: {messages_per_hour: 5}\n"
	base, err := config.Parse([]byte(y), "gw.yaml", ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	deps, err := OpenDeps(base, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer deps.Store.Close()
	deps.Live = &customer.Live{}
	s, err := customer.OpenStore(deps.Store)
	if err != nil {
		t.Fatal(err)
	}
	m := customer.NewManager(s, base, ConfigOptions(), nil)
	ctx := context.Background()
	if _, err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	eff, _, err := m.EffectiveUpdate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := Build(deps.WithConfig(eff))
	if err != nil {
		t.Fatal(err)
	}
	apply := func(t *testing.T) *State {
		t.Helper()
		eff, changed, err := m.EffectiveUpdate()
		if err != nil {
			t.Fatal(err)
		}
		dir, err := st.Dir.Update(eff, changed)
		if err != nil {
			t.Fatal(err)
		}
		next, err := Rebind(st, eff, dir, changed)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	limit := func(st *State, id string) int64 {
		c, ok := st.Dir.ByID(id)
		if !ok {
			t.Fatalf("%s is not in the directory", id)
		}
		l, ok := policy.SettingsOf[ratelimit.Settings](c.Settings, ratelimit.CustomerSection.Family)
		if !ok {
			return -1
		}
		return l.MessagesPerHour
	}
	if got := limit(st, "a"); got != 5 {
		t.Fatalf("a's messages_per_hour at start: %d, want 5", got)
	}

	t.Run("changed limits: checks kept, new limits on the customer", func(t *testing.T) {
		if _, err := m.Set(ctx, "a", map[string]any{"limits": map[string]any{"messages_per_hour": 7}}, customer.ViaCLI); err != nil {
			t.Fatal(err)
		}
		next := apply(t)
		if next.Chain != st.Chain {
			t.Error("the chain was built anew for a change of limits")
		}
		if got := limit(next, "a"); got != 7 {
			t.Errorf("a's messages_per_hour after the change: %d, want 7", got)
		}
		if got := limit(st, "a"); got != 5 {
			t.Errorf("the running State changed under the messages under way: %d, want 5", got)
		}
		st = next
	})
	t.Run("added customer: identified and known to the directory in force", func(t *testing.T) {
		if _, err := m.Add(ctx, config.Customer{ID: "b", Networks: []string{"192.0.2.2"}, Domains: []string{"b.example"}}, customer.ViaCLI); err != nil {
			t.Fatal(err)
		}
		next := apply(t)
		if next.Chain != st.Chain {
			t.Error("the chain was built anew for an added customer without keys")
		}
		if _, ok := deps.Live.ByID("b"); !ok {
			t.Error("the directory in force does not know the added customer")
		}
		if got := limit(next, "b"); got != -1 {
			t.Errorf("b has limits of its own: %d", got)
		}
		st = next
	})
	t.Run("customer with a signing key: the chain is built anew", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "c.pem")
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		c := config.Customer{ID: "c", Networks: []string{"192.0.2.3"}, Domains: []string{"c.example"}}
		c.DKIM = []config.DKIMKey{{Domain: "c.example", Selector: "s1", KeyFile: key}}
		if _, err := m.Add(ctx, c, customer.ViaCLI); err != nil {
			t.Fatal(err)
		}
		next := apply(t)
		if next.Chain == st.Chain {
			t.Error("the chain was kept although a customer's signing keys changed")
		}
	})
}
