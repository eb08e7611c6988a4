package gateway

import (
	"context"
	"github.com/aupguard/aupguard/internal/engine/setup"

	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// The reputation family (package reputation): bounce_rate judges the
// customer's hard-bounce rate, read back from Postfix's delivery log, at
// end of message. It runs after bulk_mail, whose bulk judgement its
// defer_bulk outcome uses (reputation.Spec declares it), and remembers accepted messages' queue ids.
var reputationFamily = setup.Family{Name: "reputation", Checks: []setup.Check{
	{Spec: reputation.Spec, New: func(d *Deps) (policy.Check, error) {
		svc, err := reputation.NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger)
		if err != nil {
			return nil, err
		}
		ctx, cancel := d.Store.Context(context.Background())
		defer cancel()
		_ = d.Store.LoadScripts(ctx, reputation.Scripts()...)
		return reputation.NewCheck(svc), nil
	}},
}}
