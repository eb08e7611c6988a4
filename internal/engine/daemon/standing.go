package daemon

import (
	"context"
	"fmt"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/checks/standing"
)

// standingAPI builds the stops' admin API with the other families'
// automatic flags listed beside the stops (the opt-out escalation flag,
// cleared there too; the bounce rate at act, which follows its rate), and
// hands the content flag its notifications. It is wired here until the
// family plugs its routes and observers in itself (setup.Family).
func (d *Daemon) standingAPI(p *standing.Parts, rep *repLoop) *standing.API {
	api := &standing.API{B: p.Backend, Clock: d.deps.Clock, Log: d.log}
	api.Sources = append(api.Sources, standing.Source{
		Name: standing.SourceOptout,
		List: func(ctx context.Context) ([]standing.Stop, error) {
			cfg := d.config()
			var out []standing.Stop
			for _, c := range cfg.Customers {
				st, err := optout.Status(ctx, d.deps.Store, cfg, c.ID)
				if err != nil {
					return nil, err
				}
				if f := st.Flag; f != nil {
					out = append(out, standing.Stop{Scope: standing.ScopeCustomer, ID: c.ID, Source: standing.SourceOptout,
						Reason: fmt.Sprintf("%s (%d sends to opted-out recipients); bulk mail gets bulk_mail's customer_flagged action", f.Reason, f.Hits),
						Who:    "aupguard", When: f.Since})
				}
			}
			return out, nil
		},
		Clear: func(ctx context.Context, id string) (bool, error) {
			svc, err := optout.NewService(d.deps.Store, d.config(), d.deps.Secret, d.deps.Clock, d.log)
			if err != nil {
				return false, err
			}
			return svc.Clear(ctx, id)
		},
	})
	if rep != nil && rep.svc != nil {
		api.Sources = append(api.Sources, standing.Source{
			Name: standing.SourceBounce,
			List: func(ctx context.Context) ([]standing.Stop, error) {
				cfg := d.config()
				ids := make([]string, 0, len(cfg.Customers))
				for _, c := range cfg.Customers {
					ids = append(ids, c.ID)
				}
				if len(ids) == 0 {
					return nil, nil
				}
				sts, err := rep.svc.Standings(ctx, ids)
				if err != nil {
					return nil, err
				}
				var out []standing.Stop
				now := d.deps.Clock.Now()
				for _, s := range sts {
					if s.Level != reputation.LevelAct {
						continue
					}
					out = append(out, standing.Stop{Scope: standing.ScopeCustomer, ID: s.Customer, Source: standing.SourceBounce,
						Reason: fmt.Sprintf("hard-bounce rate %.1f%% over %s (act at %.1f%%); bounce_rate_high applies its outcome until the rate falls", s.Rate*100, s.Window, s.Act*100),
						Who:    "aupguard", When: now})
				}
				return out, nil
			},
		})
	}
	if d.notifier != nil {
		p.Flags.SetNotify(func(n standing.Notice) {
			d.notifier.Notify(n.Customer, "content_flagged",
				"was flagged: malware, listed links or spam in its mail",
				fmt.Sprintf("%d messages with content findings within %s; its mail is now %s (%s).\nSample references: %v\nHeld messages are in Postfix's hold queue (postqueue -j, queue_name \"hold\"; their queue ids are in the decisions): release one with postsuper -H QUEUEID, delete one with postsuper -d QUEUEID hold.\nLift the flag: aupguard resume customer %s",
					n.Count, n.Window, n.Stop.Action, n.Stop.Reason, n.Stop.Samples, n.Customer))
		})
	}
	return api
}
