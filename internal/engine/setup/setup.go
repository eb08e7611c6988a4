// Package setup is how a family of checks plugs into the gateway, in the
// way of CoreDNS's plugins: each family's package has a setup.go that
// declares a Family (its checks' specs and factories, and the config
// sections it owns and decodes itself); the gateway lists the families
// once (gateway/families.go) and orders the checks by chain.list.
package setup

import (
	"log/slog"

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
	// Shared, when set, holds the families' long-lived objects across
	// reloads (Shared.Get); nil (a one-shot command) makes them anew.
	Shared *Shared
}

// WithConfig returns a copy of d for another config, sharing the store,
// secret and resolver (a reload keeps them; changing store, secret or DNS
// settings needs a restart).
func (d *Deps) WithConfig(cfg *config.Config) *Deps {
	n := *d
	n.Config = cfg
	n.Directory = nil
	return &n
}

// Factory builds a check from the config. It is called at start and on
// every reload.
type Factory func(d *Deps) (policy.Check, error)

// Check is one check as its family declares it.
type Check struct {
	Spec policy.Spec
	New  Factory
}

// Family is what one check package contributes: its checks and the
// top-level config sections it owns (decoded, defaulted and validated by
// the package itself).
type Family struct {
	// Name names the family (its package) in errors.
	Name     string
	Checks   []Check
	Sections []config.SectionSpec
	// Customer, when set, is the family's part of each customer entry:
	// its keys there, validated by the family into its typed settings of
	// the customer (policy.SettingsOf reads them back).
	Customer *config.CustomerSection
}
