package ratelimit

import (
	"context"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Family is the volume family as the gateway plugs it in: the size and
// recipient caps need no counters and run first; rate_limit then reserves
// the customer's counters (one store round trip per stage) and detects
// spikes. It owns the spike: section of the config (config.go); the limits
// are the core's (config.Limits in defaults: and customers:), resolved per
// customer when the customer is validated (CustomerSection, settings.go).
var Family = setup.Family{
	Name:     "ratelimit",
	Sections: []config.SectionSpec{Section},
	Setup:    setupRuntime,
	Commands: commands,
	Customer: &CustomerSection,
	Checks: []setup.Check{
		{Spec: SizeSpec, New: func(d *setup.Deps) (policy.Check, error) {
			c, err := build(d)
			if err != nil {
				return nil, err
			}
			return c.Size(), nil
		}},
		{Spec: RcptCapSpec, New: func(d *setup.Deps) (policy.Check, error) {
			c, err := build(d)
			if err != nil {
				return nil, err
			}
			return c.RcptCap(), nil
		}},
		{Spec: RateSpec, New: func(d *setup.Deps) (policy.Check, error) {
			c, err := build(d)
			if err != nil {
				return nil, err
			}
			return c.Rate(), nil
		}},
	},
}

// build opens the store's counter backend (shared by the three checks and
// the rest of the process) and builds the checks of d's config on it.
func build(d *setup.Deps) (*Checks, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := Open(ctx, d.Store)
	if err != nil {
		return nil, err
	}
	return New(b, d.Config, d.Secret, d.Clock, d.Logger)
}
