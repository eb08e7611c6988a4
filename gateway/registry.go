// Package gateway is the engine between the MTA and the checks: it
// attributes each message to a customer, runs the policy chain at MAIL,
// RCPT and end of message, turns verdicts into replies, and logs and
// publishes one decision per refusal and per message. It knows nothing of
// the milter wire protocol (package milter adapts it), so explain and the
// benchmarks drive the very same code.
package gateway

import (
	"fmt"
	"log/slog"
	"sort"

	"github.com/aupguard/aupguard/clock"
	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/panics"
	"github.com/aupguard/aupguard/policy"
	"github.com/aupguard/aupguard/resolver"
	"github.com/aupguard/aupguard/secrets"
	"github.com/aupguard/aupguard/store"
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
}

// Factory builds a check from the config. It is called at start and on
// every reload; a check that holds resources implements io.Closer and is
// closed when the config it was built for is retired.
type Factory func(d *Deps) (policy.Check, error)

type plugin struct {
	name    string
	order   int
	factory Factory
}

// registry is filled by the plugin_*.go files of this package at init, one
// file per family of checks (CoreDNS-style), and never changes afterwards.
var registry = map[string]plugin{}

// register adds a check. order places it in the default chain.
func register(name string, order int, f Factory) {
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("gateway: check %q registered twice", name))
	}
	registry[name] = plugin{name: name, order: order, factory: f}
}

// CheckNames returns every known check, in default chain order.
func CheckNames() []string {
	ps := make([]plugin, 0, len(registry))
	for _, p := range registry {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].order != ps[j].order {
			return ps[i].order < ps[j].order
		}
		return ps[i].name < ps[j].name
	})
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return names
}

// ConfigOptions are the options config.Load needs to validate check names.
func ConfigOptions() config.Options {
	return config.Options{Checks: CheckNames(), DefaultChain: CheckNames()}
}
