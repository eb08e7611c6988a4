package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

// QuotaReport is a customer's limits and their current use, for
// `aupguard quota` and the admin API (/api/customers/{id}/quota).
type QuotaReport struct {
	Customer string `json:"customer"`
	// Time is the store's time the report was taken at.
	Time   time.Time    `json:"time"`
	Limits []LimitUsage `json:"limits"`
	// Login and LoginLimits are one login's own limits and use, when the
	// report was asked for a login and the customer limits its logins.
	Login       string       `json:"login,omitempty"`
	LoginLimits []LimitUsage `json:"login_limits,omitempty"`
	// Reseller and ResellerLimits are the customer's reseller's limits and
	// their use by all its customers, when it has any.
	Reseller       string       `json:"reseller,omitempty"`
	ResellerLimits []LimitUsage `json:"reseller_limits,omitempty"`
	// Spike is the spike detector's view of the current hour; nil when
	// spike detection is off.
	Spike *SpikeStatus `json:"spike,omitempty"`
}

// LimitUsage is one limit of a QuotaReport.
type LimitUsage struct {
	Name string `json:"name"`
	// Kind is "rate" (smooth, GCRA), "quota" (sliding window),
	// "per_message" or "per_recipient" (no shared counter to show).
	Kind string `json:"kind"`
	Unit string `json:"unit"`
	// Limit is 0 when unlimited.
	Limit     int64  `json:"limit"`
	Unlimited bool   `json:"unlimited,omitempty"`
	Period    string `json:"period,omitempty"`
	// Used and Remaining are the current use; nil for limits without a
	// shared counter.
	Used      *int64 `json:"used,omitempty"`
	Remaining *int64 `json:"remaining,omitempty"`
	// NextFreeAt is when one more unit is allowed again (nil: now).
	NextFreeAt *time.Time `json:"next_free_at,omitempty"`
	// FreeAt is when all of the current use has freed.
	FreeAt *time.Time `json:"free_at,omitempty"`
}

// SpikeStatus is the spike detector's current view.
type SpikeStatus struct {
	Window    string  `json:"window"`
	Count     int64   `json:"count"`
	Baseline  float64 `json:"baseline_per_hour"`
	Threshold float64 `json:"threshold"`
	Factor    float64 `json:"factor"`
	Floor     int64   `json:"floor"`
	Spiking   bool    `json:"spiking"`
}

// Quota reports every limit of a customer with its use, and its
// reseller's, in one store round trip. The customer must be in cfg.
func Quota(ctx context.Context, h *store.Handle, cfg *config.Config, customerID string) (QuotaReport, error) {
	return QuotaOf(ctx, h, cfg, customerID, "")
}

// QuotaOf is Quota with one login's own limits and use too (login "":
// none).
func QuotaOf(ctx context.Context, h *store.Handle, cfg *config.Config, customerID, login string) (QuotaReport, error) {
	var cu *config.Customer
	for i := range cfg.Customers {
		if cfg.Customers[i].ID == customerID {
			cu = &cfg.Customers[i]
			break
		}
	}
	if cu == nil {
		return QuotaReport{}, fmt.Errorf("no customer %q in %s", customerID, cfg.File)
	}
	b, err := Open(ctx, h)
	if err != nil {
		return QuotaReport{}, err
	}
	s, err := SettingsFor(cfg, customerID)
	if err != nil {
		return QuotaReport{}, err
	}
	sp, err := ConfigOf(cfg)
	if err != nil {
		return QuotaReport{}, err
	}
	var scs []scope
	if login != "" {
		if ll := s.logins; ll != nil {
			ls, over := ll.overrides[login]
			if !over {
				ls = ll.def
			}
			scs = append(scs, scope{kind: ScopeLogin, owner: login, prefix: loginKey(login) + ":", s: ls})
		}
	}
	if r := cfg.Reseller(cu.Reseller); r != nil {
		if rs := fromLimits(sp, r.Limits); rs.counts() {
			scs = append(scs, scope{kind: ScopeReseller, owner: r.ID, s: rs})
		}
	}
	return quota(ctx, b, s, customerID, scs...)
}

func quota(ctx context.Context, b Backend, s Settings, customerID string, scs ...scope) (QuotaReport, error) {
	rep := QuotaReport{Customer: customerID}
	var ops []Op
	var at []int // index in rep.Limits of each op
	for _, l := range countedLimits {
		limit := l.get(s)
		kind := "rate"
		if l.kind == KindWindow {
			kind = "quota"
		}
		u := LimitUsage{Name: l.name, Kind: kind, Unit: l.unit, Limit: limit, Unlimited: limit <= 0, Period: l.period.String()}
		if limit > 0 {
			ops = append(ops, l.op(limit, 1))
			at = append(at, len(rep.Limits))
		}
		rep.Limits = append(rep.Limits, u)
	}
	for _, x := range []struct {
		name, kind, unit string
		limit            int64
		period           time.Duration
	}{
		{"recipients_per_message", "per_message", "recipients", s.RecipientsPerMessage, 0},
		{"message_size", "per_message", "bytes", s.MessageSize, 0},
		{"per_recipient_per_hour", "per_recipient", "messages", s.PerRecipientPerHour, time.Hour},
		{"per_recipient_per_day", "per_recipient", "messages", s.PerRecipientPerDay, 24 * time.Hour},
	} {
		u := LimitUsage{Name: x.name, Kind: x.kind, Unit: x.unit, Limit: x.limit, Unlimited: x.limit <= 0}
		if x.period > 0 {
			u.Period = x.period.String()
		}
		rep.Limits = append(rep.Limits, u)
	}
	// The login's and the reseller's counted limits, read in the same run.
	type scoped struct {
		list *[]LimitUsage
		idx  int
	}
	var sat []scoped // per op after the customer's
	for _, sc := range scs {
		list := &rep.LoginLimits
		if sc.kind == ScopeLogin {
			rep.Login = sc.owner
		} else {
			list, rep.Reseller = &rep.ResellerLimits, sc.owner
		}
		for _, l := range countedLimits {
			limit := l.get(sc.s)
			kind := "rate"
			if l.kind == KindWindow {
				kind = "quota"
			}
			if limit > 0 {
				ops = append(ops, sc.op(l, limit, 1))
				sat = append(sat, scoped{list, len(*list)})
			}
			*list = append(*list, LimitUsage{Name: l.name, Kind: kind, Unit: l.unit, Limit: limit, Unlimited: limit <= 0, Period: l.period.String()})
		}
	}
	if s.SpikeEnabled {
		ops = append(ops, Op{Kind: KindSpike, Name: FindingSpike, Key: "spike", Period: s.SpikeWindow, N: 0, Spike: s.Spike})
	}
	if len(ops) == 0 {
		return rep, nil
	}
	r, err := b.Run(ctx, customerID, ModeUsage, ops)
	if err != nil {
		return QuotaReport{}, err
	}
	rep.Time = r.Now.UTC()
	for i, x := range sat {
		setUse(&(*x.list)[x.idx], r.Ops[len(at)+i], rep.Time)
	}
	for i, idx := range at {
		setUse(&rep.Limits[idx], r.Ops[i], rep.Time)
	}
	if s.SpikeEnabled {
		o := r.Ops[len(ops)-1]
		rep.Spike = &SpikeStatus{Window: s.SpikeWindow.String(), Count: o.Count, Baseline: o.Baseline, Threshold: o.Threshold,
			Factor: s.Spike.Factor, Floor: s.Spike.Floor, Spiking: o.Flagged}
	}
	return rep, nil
}

// setUse fills a limit's use from its op's result at the store's time.
func setUse(u *LimitUsage, o OpResult, now time.Time) {
	used := o.Used
	rem := max(u.Limit-used, 0)
	u.Used, u.Remaining = &used, &rem
	if o.Next > 0 {
		t := now.Add(o.Next)
		u.NextFreeAt = &t
	}
	if o.Reset > 0 {
		t := now.Add(o.Reset)
		u.FreeAt = &t
	}
}
