// Package setup is the plugin boundary, in the way of CoreDNS's plugins:
// each family's package has a setup.go that declares a Family, the whole
// of what the family adds to the gateway: its checks' specs and
// factories, the config sections it owns and decodes itself, its CLI
// subcommands, and (through Setup, on a Host) its background services,
// HTTP routes, metric collectors, report sections, console panels and
// readiness components. The core names no family: the one list of
// families is package plugins (internal/plugins), which registers them
// here (Register) and which only cmd/aupguard imports; the checks run in
// the order of the config's chain (default: chain.list).
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
	// Live, when set, is the directory in force: a check that asks
	// whether an id is a customer asks it, so that it stays true when the
	// check is kept across live directory changes (gateway.Rebind).
	Live *customer.Live
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

// Family is what one family package contributes, all of it declared
// here: nothing in the core names a family.
type Family struct {
	// Name names the family (its package) in errors.
	Name string
	// Checks are the family's checks (specs and factories).
	Checks []Check
	// Sections are the top-level config sections the family owns
	// (decoded, defaulted and validated by the package itself).
	Sections []config.SectionSpec
	// Customer, when set, is the family's part of each customer entry:
	// its keys there, validated by the family into its typed settings of
	// the customer (policy.SettingsOf reads them back).
	Customer *config.CustomerSection
	// Setup, when set, registers the family's runtime parts on h:
	// services, routes, collectors, report sections, console panels,
	// readiness components and reload hooks. It runs once per Host (the
	// daemon's at start; a one-shot command's, such as `aupguard report`,
	// which uses only the report sections), after the config is loaded
	// and before the chain is built. It must not start goroutines or
	// listen: the Host starts the services it registers.
	Setup func(h *Host) error
	// Commands are the family's CLI subcommands (`aupguard NAME ...`).
	Commands []Command
	// Build, when set, says how the family was built ("RSA signing:
	// openssl"); `aupguard version` prints it in parentheses.
	Build string
	// RecipientForm, when set, says how the family canonicalises a
	// recipient for its keyed hash (local part case-sensitive, subaddress
	// folded); the gateway hashes the recipients of its decisions the same
	// way, so that one recipient has one hash everywhere. At most one
	// family sets it (opt-out); without any, recipients are compared
	// case-insensitively and not folded.
	RecipientForm func(cfg *config.Config) (caseSensitive, foldSubaddress bool, err error)
}
