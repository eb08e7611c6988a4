// Package gateway is the engine between the MTA and the checks: it
// attributes each message to a customer, runs the policy chain at MAIL,
// RCPT and end of message, turns verdicts into replies, and logs and
// publishes one decision per refusal and per message. It knows nothing of
// the milter wire protocol (package milter adapts it), so explain and the
// benchmarks drive the very same code.
package gateway

import (
	_ "embed"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

type plugin struct {
	spec    policy.Spec
	factory setup.Factory
}

// registry returns every check of the registered families (setup.Families,
// listed by package plugins), by name. It is built at first use, after
// every package's init has registered its families, and never changes.
var registry = sync.OnceValue(func() map[string]plugin { return buildRegistry(setup.Families()) })

// buildRegistry indexes the families' checks by name; a name declared
// twice is a programming error.
func buildRegistry(fams []setup.Family) map[string]plugin {
	r := map[string]plugin{}
	for _, f := range fams {
		for _, c := range f.Checks {
			if _, dup := r[c.Spec.Name]; dup {
				panic(fmt.Sprintf("gateway: check %q declared twice (family %s)", c.Spec.Name, f.Name))
			}
			r[c.Spec.Name] = plugin{spec: c.Spec, factory: c.New}
		}
	}
	return r
}

// Sections returns the config sections the families own.
func Sections() []config.SectionSpec {
	var out []config.SectionSpec
	for _, f := range setup.Families() {
		out = append(out, f.Sections...)
	}
	return out
}

// CustomerSections returns the families' sections of a customer entry.
func CustomerSections() []config.CustomerSection {
	var out []config.CustomerSection
	for _, f := range setup.Families() {
		if f.Customer != nil {
			out = append(out, *f.Customer)
		}
	}
	return out
}

// chainList is the default chain, in data: one check name per line.
//
//go:embed chain.list
var chainList string

// parseChainList reads the chain list: one name per line, '#' comments.
func parseChainList(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// DefaultChain returns every known check, in default chain order (the
// chain.list file).
func DefaultChain() []string {
	return parseChainList(chainList)
}

// CheckNames returns every known check: the default chain's, then the
// registered checks it does not list (a family being added, a test's
// scratch family), by name. A config's chain may name any of them.
func CheckNames() []string {
	names := DefaultChain()
	listed := map[string]bool{}
	for _, n := range names {
		listed[n] = true
	}
	var extra []string
	for n := range registry() {
		if !listed[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	return append(names, extra...)
}

// Specs returns what every known check declares, in CheckNames order.
func Specs() []policy.Spec {
	names := CheckNames()
	out := make([]policy.Spec, 0, len(names))
	for _, n := range names {
		if p, ok := registry()[n]; ok {
			out = append(out, p.spec)
		}
	}
	return out
}

// ConfigOptions are the options config.Load needs to validate check and
// finding names and the chain.
func ConfigOptions() config.Options {
	return config.Options{Checks: CheckNames(), Specs: Specs(), DefaultChain: DefaultChain(), Sections: Sections(), Customers: CustomerSections()}
}
