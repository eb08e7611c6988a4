package gateway

import (
	"testing"

	"github.com/aupguard/aupguard/internal/engine/policy"
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
