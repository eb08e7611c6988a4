package standing

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// setupRuntime registers the family's runtime parts: the content flag as
// a decision observer (its counting runs in the background), the stops'
// admin API with the opt-out escalation flag and the bounce rate at act
// listed beside the stops, and the postmaster's notice when the content
// flag is raised.
func setupRuntime(h *setup.Host) error {
	p, err := PartsOf(h.Deps)
	if err != nil {
		return err
	}
	h.Observer(p.Flags)
	h.Collector(newCollector(p))
	h.OnReload(func(cfg *config.Config) error {
		c, err := ConfigOf(cfg)
		if err != nil {
			return err
		}
		p.View.SetRefresh(c.Refresh)
		p.Flags.SetConfig(c)
		return nil
	})
	api := &API{B: p.Backend, Clock: h.Deps.Clock, Log: h.Deps.Logger, Sources: []Source{optoutSource(h), bounceSource(h)}}
	h.AdminRoute("/api/standing", api)
	h.AdminRoute("/api/standing/{scope}/{id}", api)
	if h.MailPostmaster != nil {
		mail := h.MailPostmaster
		p.Flags.SetNotify(func(n Notice) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := mail(ctx, noticeSubject(n), noticeBody(n)); err != nil {
				h.Deps.Logger.Error("standing: notifying the postmaster failed", "customer", n.Customer, "err", err)
			}
		})
	}
	return nil
}

func noticeSubject(n Notice) string {
	if n.Stop.Scope == ScopeLogin {
		return fmt.Sprintf("login %s of customer %s flagged: malware, listed links or spam in its mail (%s)", n.Stop.ID, n.Customer, n.Stop.Action)
	}
	return fmt.Sprintf("customer %s flagged: malware, listed links or spam in its mail (%s)", n.Customer, n.Stop.Action)
}

// noticeBody is the postmaster's mail: what raised the flag, the sample
// references, what happens to the mail and how to release it.
func noticeBody(n Notice) string {
	var b strings.Builder
	who := "Customer " + n.Customer
	if n.Stop.Scope == ScopeLogin {
		who = "Login " + n.Stop.ID + " of customer " + n.Customer
	}
	fmt.Fprintf(&b, "%s sent %d messages with content findings (malware, links to listed domains, spam at hold or above) within %s.\n\n", who, n.Count, n.Window)
	fmt.Fprintf(&b, "Since %s its mail is stopped: %s.\n", n.Stop.When.UTC().Format(time.RFC1123), n.Stop.Action)
	fmt.Fprintf(&b, "Sample references (console: /decision?ref=REF): %s\n\n", strings.Join(n.Stop.Samples, " "))
	if n.Stop.Action == ActionHold {
		b.WriteString("Its further mail waits in Postfix's hold queue (nothing bounces). List it with\n  postqueue -j | grep '\"queue_name\": *\"hold\"'\nrelease one message with  postsuper -H QUEUEID  or delete it with  postsuper -d QUEUEID hold.\n\n")
	}
	fmt.Fprintf(&b, "Every stopped sender: /standing in the console, or aupguard standing.\nLift the flag: aupguard resume %s %s\n", n.Stop.Scope, n.Stop.ID)
	return b.String()
}

// optoutSource lists the customers flagged by opt-out escalation (their
// bulk mail gets bulk_mail's customer_flagged action) and clears them.
func optoutSource(h *setup.Host) Source {
	return Source{
		Name: SourceOptout,
		List: func(ctx context.Context) ([]Stop, error) {
			cfg := h.Config()
			var out []Stop
			for _, c := range cfg.Customers {
				st, err := optout.Status(ctx, h.Deps.Store, cfg, c.ID)
				if err != nil {
					return nil, err
				}
				if f := st.Flag; f != nil {
					out = append(out, Stop{Scope: ScopeCustomer, ID: c.ID, Source: SourceOptout, Who: "aupguard", When: f.Since,
						Reason: fmt.Sprintf("%s (%d sends to opted-out recipients); its bulk mail gets bulk_mail's customer_flagged action", f.Reason, f.Hits)})
				}
			}
			return out, nil
		},
		Clear: func(ctx context.Context, id string) (bool, error) {
			svc, err := optout.NewService(h.Deps.Store, h.Config(), h.Deps.Secret, h.Deps.Clock, h.Deps.Logger)
			if err != nil {
				return false, err
			}
			return svc.Clear(ctx, id)
		},
	}
}

// bounceSource lists the customers whose hard-bounce rate is over act
// (bounce_rate_high applies their outcome until the rate falls; nothing
// to clear by hand).
func bounceSource(h *setup.Host) Source {
	return Source{
		Name: SourceBounce,
		List: func(ctx context.Context) ([]Stop, error) {
			svc, _, _ := reputation.Running(h)
			if svc == nil {
				return nil, nil
			}
			cfg := h.Config()
			ids := make([]string, 0, len(cfg.Customers))
			for _, c := range cfg.Customers {
				ids = append(ids, c.ID)
			}
			if len(ids) == 0 {
				return nil, nil
			}
			sts, err := svc.Standings(ctx, ids)
			if err != nil {
				return nil, err
			}
			var out []Stop
			now := h.Deps.Clock.Now()
			for _, s := range sts {
				if s.Level != reputation.LevelAct {
					continue
				}
				out = append(out, Stop{Scope: ScopeCustomer, ID: s.Customer, Source: SourceBounce, Who: "aupguard", When: now,
					Reason: fmt.Sprintf("hard-bounce rate %.1f%% over %s (act at %.1f%%); bounce_rate_high applies its outcome until the rate falls", s.Rate*100, s.Window, s.Act*100)})
			}
			return out, nil
		},
	}
}
