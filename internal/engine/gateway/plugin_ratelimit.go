package gateway

import (
	"context"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/ratelimit"
)

// The volume checks (package ratelimit): the size and recipient caps need
// no counters and run first; rate_limit then reserves the customer's
// counters (one store round trip per stage) and detects spikes.
var ratelimitFamily = setup.Family{Name: "ratelimit", Checks: []setup.Check{
	{Spec: ratelimit.SizeSpec, New: func(d *Deps) (policy.Check, error) {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		return c.Size(), nil
	}},
	{Spec: ratelimit.RcptCapSpec, New: func(d *Deps) (policy.Check, error) {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		return c.RcptCap(), nil
	}},
	{Spec: ratelimit.RateSpec, New: func(d *Deps) (policy.Check, error) {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		return c.Rate(), nil
	}},
}}

func build(d *Deps) (*ratelimit.Checks, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := ratelimit.Open(ctx, d.Store)
	if err != nil {
		return nil, err
	}
	return ratelimit.New(b, d.Config, d.Secret, d.Clock, d.Logger), nil
}
