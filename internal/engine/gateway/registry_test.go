package gateway

import (
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// TestChainListMatchesRegistry: chain.list names every registered check
// exactly once and nothing else, and the default chain it gives can work
// (every check's needs come before it, headers are added before signing).
func TestChainListMatchesRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range DefaultChain() {
		if seen[n] {
			t.Errorf("chain.list: %q listed twice", n)
		}
		seen[n] = true
		if _, ok := registry()[n]; !ok {
			t.Errorf("chain.list: %q is no registered check", n)
		}
	}
	for n := range registry() {
		if !seen[n] {
			t.Errorf("check %q is registered but missing from chain.list", n)
		}
	}
	for _, p := range policy.CheckChain(DefaultChain(), policy.SpecIndex(Specs())) {
		t.Errorf("default chain[%d]: %s", p.Index, p.Msg)
	}
	for _, s := range Specs() {
		names := map[string]bool{}
		for _, f := range s.Findings {
			if f.Name == "" || names[f.Name] || f.Name == policy.FindingError {
				t.Errorf("check %s: bad or duplicate finding %q", s.Name, f.Name)
			}
			names[f.Name] = true
			if r := policy.ReplyFor(f.Action, f.Reply); f.Action.Decisive() && f.Action != policy.Quarantine && r.IsZero() {
				t.Errorf("check %s finding %s: no reply for %s", s.Name, f.Name, f.Action)
			}
		}
	}
}

// TestBuildHoldsChainToNeeds: a chain built by hand (not through
// config.Parse, which says so at the line) is refused when a check runs
// before a check whose output it reads, and built when the order is right.
func TestBuildHoldsChainToNeeds(t *testing.T) {
	tests := []struct {
		name    string
		chain   []string
		wantErr string
	}{
		{"dmarc before spf", []string{"dmarc", "spf", "dkim"}, `check "dmarc" needs the results of "spf", which runs after it`},
		{"dmarc without dkim", []string{"spf", "dmarc"}, `check "dmarc" needs the results of "dkim", which is not in the chain`},
		{"bounce_rate before bulk_mail", []string{"bounce_rate", "bulk_mail"}, `check "bounce_rate" needs the results of "bulk_mail", which runs after it`},
		{"in order", []string{"spf", "dkim", "dmarc", "bulk_mail", "bounce_rate"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(sessionConfig), "t.yaml", ConfigOptions())
			if err != nil {
				t.Fatal(err)
			}
			cfg.Chain = tt.chain
			h, err := store.Open(cfg.Store, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			_, err = Build(&setup.Deps{Config: cfg, Store: h, Secret: secrets.Key("0123456789abcdef")})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Build: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Build error %v, want one saying %s", err, tt.wantErr)
			}
		})
	}
}
