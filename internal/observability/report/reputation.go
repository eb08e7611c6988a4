package report

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

// ReputationFunc returns the bounce standings of customers and, when
// listings is set (the provider's report), the blocklist states.
type ReputationFunc func(ctx context.Context, customers []string, listings bool) ([]reputation.Standing, []reputation.Listing, error)

// ReputationOf reads standings and listings from the store.
func ReputationOf(h *store.Handle, cfg *config.Config) ReputationFunc {
	return ReputationIn(h, func() *config.Config { return cfg })
}

// ReputationIn is ReputationOf with the config in force at each call
// (cfg's answer: the admin server's, which follows reloads).
func ReputationIn(h *store.Handle, cfg func() *config.Config) ReputationFunc {
	return func(ctx context.Context, ids []string, listings bool) ([]reputation.Standing, []reputation.Listing, error) {
		svc, err := reputation.NewService(h, cfg(), nil, h.Clock, nil)
		if err != nil {
			return nil, nil, err
		}
		var sts []reputation.Standing
		if len(ids) > 0 {
			if sts, err = svc.Standings(ctx, ids); err != nil {
				return nil, nil, err
			}
		}
		if !listings {
			return sts, nil, nil
		}
		o, err := svc.Overview(ctx)
		return sts, o.Listings, err
	}
}

// addReputation adds the bounce standings (customers with results in the
// window) and, to the provider's report, the blocklist states.
func addReputation(ctx context.Context, r *Report, o Options) {
	if o.Reputation == nil {
		return
	}
	var ids []string
	switch {
	case o.Customer != "":
		ids = []string{o.Customer}
	case o.Config != nil:
		for _, c := range o.Config.Customers {
			ids = append(ids, c.ID)
		}
	}
	sts, ls, err := o.Reputation(ctx, ids, o.Customer == "")
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("bounce rates and blocklists: %v", err))
		return
	}
	rank := map[string]int{reputation.LevelAct: 0, reputation.LevelWarn: 1, reputation.LevelOK: 2, reputation.LevelLowVolume: 3}
	for _, st := range sts {
		if st.Final() > 0 || st.Deferred > 0 {
			r.Bounces = append(r.Bounces, st)
		}
	}
	sort.SliceStable(r.Bounces, func(i, j int) bool {
		a, b := r.Bounces[i], r.Bounces[j]
		if rank[a.Level] != rank[b.Level] {
			return rank[a.Level] < rank[b.Level]
		}
		if a.Rate != b.Rate {
			return a.Rate > b.Rate
		}
		return a.Customer < b.Customer
	})
	r.Blocklists = ls
}

// bounceCells renders a bounce standing's row.
func bounceCells(st reputation.Standing) []string {
	i64 := func(n int64) string { return strconv.FormatInt(n, 10) }
	rate := "-"
	if st.Final() > 0 {
		rate = strconv.FormatFloat(st.Rate*100, 'f', 2, 64) + "%"
	}
	level := st.Level
	if level == reputation.LevelAct || level == reputation.LevelWarn {
		level = strings.ToUpper(level)
	}
	return []string{customerLabel(st.Customer), i64(st.Sent), i64(st.Hard), i64(st.Policy), i64(st.Other), i64(st.Deferred), rate, level, string(st.Outcome)}
}

// listingCells renders a blocklist state's row.
func listingCells(l reputation.Listing) []string {
	state := "unknown"
	switch {
	case l.Listed:
		state = "LISTED " + strings.Join(l.Codes, ",")
	case l.Known:
		state = "not listed"
	}
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04")
	}
	note := l.Error
	if note == "" {
		note = "-"
	}
	return []string{l.Address, l.Zone, state, at(l.Since), at(l.Checked), note}
}
