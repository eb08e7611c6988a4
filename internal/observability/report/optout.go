package report

import (
	"context"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

// The opt-out family's parts of the report that the console shows too
// (the standing, the complaint-rate trend, the attention list): one place
// for the report's and the console's use of the family's types, until
// they are the family's report section and console panel (issue 26 §1).

// OptOutStandingIn is OptOutStanding with the config in force at each
// call (cfg's answer: the admin server's, which follows reloads).
func OptOutStandingIn(h *store.Handle, cfg func() *config.Config) StandingFunc {
	return func(ctx context.Context, id string) (*optout.CustomerStatus, error) {
		return OptOutStanding(h, cfg())(ctx, id)
	}
}

// ComplaintThresholds returns the complaint rates at which the opt-out
// family warns and acts, as configured in cfg (validated when loaded).
func ComplaintThresholds(cfg *config.Config) (warn, act float64, err error) {
	oc, err := optout.ConfigOf(cfg)
	if err != nil {
		return 0, 0, err
	}
	return oc.Complaints.Warn, oc.Complaints.Act, nil
}

// ComplaintTrend returns the SVG chart of a customer's complaint-rate
// trend, with the warn and act thresholds of cfg.
func ComplaintTrend(ctx context.Context, h *store.Handle, cfg *config.Config, id string) (string, error) {
	warn, act, err := ComplaintThresholds(cfg)
	if err != nil {
		return "", err
	}
	pts, err := optout.Trend(ctx, h, cfg, id)
	if err != nil {
		return "", err
	}
	return ComplaintTrendChart(pts, warn, act), nil
}

// OptOutSources are the opt-out sources in the order the standing lists
// them.
func OptOutSources() []string { return optout.SourceOrder }

// Attention returns the customers of r that need a look: flagged, or with
// a complaint rate at warn or act.
func (r *Report) Attention() []*optout.CustomerStatus {
	var out []*optout.CustomerStatus
	for _, c := range r.Customers {
		if st := c.Standing; st != nil && (st.Flag != nil || st.RateLevel == "warn" || st.RateLevel == "act") {
			out = append(out, st)
		}
	}
	return out
}
