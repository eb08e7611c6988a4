package gateway

import (
	"context"
	"github.com/aupguard/aupguard/internal/engine/setup"

	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// The opt-out family (package optout): suppression at RCPT (refusing
// recipients who opted out, counting toward escalation), the bulk-mail
// rules at end of message, and the headers added to accepted mail (the
// customer stamp and Feedback-ID, then one-click unsubscribe), which come
// before DKIM signing (dkim_sign declares that it signs headers, and the
// config refuses a chain that adds headers after it).
var optoutFamily = setup.Family{Name: "optout", Checks: []setup.Check{
	{Spec: optout.SuppressionSpec, New: func(d *Deps) (policy.Check, error) {
		svc, err := optoutService(d)
		if err != nil {
			return nil, err
		}
		return optout.NewSuppression(svc), nil
	}},
	{Spec: optout.BulkSpec, New: func(d *Deps) (policy.Check, error) {
		svc, err := optoutService(d)
		if err != nil {
			return nil, err
		}
		// DKIM alignment comes from the typed auth results on the
		// transaction (dkim, dmarc and the gateway's own signature).
		return optout.NewBulk(svc, auth.DKIMAligned), nil
	}},
	{Spec: optout.StampSpec, New: func(d *Deps) (policy.Check, error) {
		svc, err := optoutService(d)
		if err != nil {
			return nil, err
		}
		return optout.NewStamper(svc), nil
	}},
	{Spec: optout.UnsubscribeSpec, New: func(d *Deps) (policy.Check, error) {
		svc, err := optoutService(d)
		if err != nil {
			return nil, err
		}
		return optout.NewUnsubscriber(svc), nil
	}},
}}

func optoutService(d *Deps) (*optout.Service, error) {
	svc, err := optout.NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger)
	if err != nil {
		return nil, err
	}
	// EVALSHA from the first message on; a failure here is not fatal
	// (Script.Run loads a missing script on NOSCRIPT).
	ctx, cancel := d.Store.Context(context.Background())
	defer cancel()
	if err := d.Store.LoadScripts(ctx, optout.Scripts()...); err != nil && d.Logger != nil {
		d.Logger.Warn("optout: preloading store scripts failed, they load on first use", "err", err)
	}
	return svc, nil
}
