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
	"log/slog"
	"strings"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/panics"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// Deps are what a check may need, passed in (never globals).
type Deps struct {
	Config   *config.Config
	Store    *store.Handle
	Clock    clock.Clock
	Logger   *slog.Logger
	Resolver resolver.Resolver
	Secret   secrets.Key
	// Panics logs and counts the panics recovered in checks and milter
	// connections (nil: logged to slog.Default, not counted).
	Panics *panics.Reporter
	// Directory, when set, is the identification index already built for
	// Config (customer.Directory.Update of the running one, for a live
	// directory change); nil builds it from Config.
	Directory *customer.Directory
}

// Factory builds a check from the config. It is called at start and on
// every reload.
type Factory func(d *Deps) (policy.Check, error)

type plugin struct {
	spec    policy.Spec
	factory Factory
}

// registry is filled by the plugin_*.go files of this package at init, one
// file per family of checks (CoreDNS-style), and never changes afterwards.
var registry = map[string]plugin{}

// register adds a check, as its package declares it.
func register(spec policy.Spec, f Factory) {
	if _, dup := registry[spec.Name]; dup {
		panic(fmt.Sprintf("gateway: check %q registered twice", spec.Name))
	}
	registry[spec.Name] = plugin{spec: spec, factory: f}
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

// CheckNames returns every known check, in default chain order.
func CheckNames() []string { return DefaultChain() }

// Specs returns what every known check declares, in default chain order.
func Specs() []policy.Spec {
	names := DefaultChain()
	out := make([]policy.Spec, 0, len(names))
	for _, n := range names {
		if p, ok := registry[n]; ok {
			out = append(out, p.spec)
		}
	}
	return out
}

// ConfigOptions are the options config.Load needs to validate check and
// finding names and the chain.
func ConfigOptions() config.Options {
	return config.Options{Checks: CheckNames(), Specs: Specs(), DefaultChain: DefaultChain()}
}
