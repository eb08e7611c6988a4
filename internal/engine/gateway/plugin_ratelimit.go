package gateway

import (
	"context"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/ratelimit"
)

// The volume checks (package ratelimit): the size and recipient caps need
// no counters and run first; rate_limit then reserves the customer's
// counters (one store round trip per stage) and detects spikes.
func init() {
	build := func(d *Deps) (*ratelimit.Checks, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := ratelimit.Open(ctx, d.Store)
		if err != nil {
			return nil, err
		}
		return ratelimit.New(b, d.Config, d.Secret, d.Clock, d.Logger), nil
	}
	register(ratelimit.SizeSpec, func(d *Deps) (policy.Check, error) {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		return c.Size(), nil
	})
	register(ratelimit.RcptCapSpec, func(d *Deps) (policy.Check, error) {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		return c.RcptCap(), nil
	})
	register(ratelimit.RateSpec, func(d *Deps) (policy.Check, error) {
		c, err := build(d)
		if err != nil {
			return nil, err
		}
		return c.Rate(), nil
	})
}
