package optout

import (
	"context"
	"fmt"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

// Rate levels of a customer's complaint rate.
const (
	RateOK   = "ok"
	RateWarn = "warn"
	RateAct  = "act"
	// RateLowVolume: fewer deliveries than optout.complaints.min_delivered.
	RateLowVolume = "low_volume"
)

// CustomerStatus is a customer's opt-out standing, for the admin API, the
// reports and `aupguard customer status`.
type CustomerStatus struct {
	Customer string `json:"customer"`
	// Flag is set while the customer is flagged (nil otherwise).
	Flag *Flag `json:"flag"`
	// OptedOutSends counts sends to opted-out recipients in the
	// escalation window; FlagThreshold is the count that flags.
	OptedOutSends int64 `json:"opted_out_sends"`
	FlagThreshold int   `json:"flag_threshold"`
	// Complaints and Delivered are counted over the complaint window;
	// ComplaintRate is their ratio (0 when nothing was delivered).
	Complaints    int64   `json:"complaints"`
	Delivered     int64   `json:"delivered"`
	ComplaintRate float64 `json:"complaint_rate"`
	// RateLevel is ok, warn, act or low_volume.
	RateLevel string `json:"rate_level"`
	// ListSize is the number of entries on the customer's own list.
	ListSize int64 `json:"list_size"`
	// Sources counts the opt-outs recorded on the customer's list by
	// source (unsubscribe, complaint, api, cli, import), since it began.
	Sources map[string]int64 `json:"sources"`
}

// SourceOrder is the order sources are shown in (reports, console).
var SourceOrder = []string{SourceUnsubscribe, SourceComplaint, SourceAPI, SourceCLI, SourceImport}

// OptOutsRecorded is the total of Sources.
func (cs *CustomerStatus) OptOutsRecorded() int64 {
	var n int64
	for _, v := range cs.Sources {
		n += v
	}
	return n
}

// Status reads a customer's flag, counters and list size from the store.
// It needs no secret, so the report and admin code can call it directly.
func Status(ctx context.Context, h *store.Handle, cfg *config.Config, customerID string) (CustomerStatus, error) {
	b, err := Open(h)
	if err != nil {
		return CustomerStatus{}, err
	}
	ctx, cancel := h.Context(ctx)
	defer cancel()
	if err := knownList(cfg, customerID); err != nil {
		return CustomerStatus{Customer: customerID}, badRequest(err)
	}
	o, err := ConfigOf(cfg)
	if err != nil {
		return CustomerStatus{Customer: customerID}, err
	}
	return status(ctx, b, customerID, o.Escalation.Threshold, NewWindow(o.Escalation.Window), NewWindow(o.Complaints.Window),
		o.Complaints.Warn, o.Complaints.Act, int64(o.Complaints.MinDelivered), h.Clock.Now())
}

// Status is Status for the service's store.
func (s *Service) Status(ctx context.Context, customerID string) (CustomerStatus, error) {
	if err := knownList(s.Config, customerID); err != nil {
		return CustomerStatus{Customer: customerID}, badRequest(err)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	st := s.Settings
	return status(ctx, s.Backend, customerID, st.Threshold, st.Escalation, st.Rate, st.Warn, st.Act, st.MinDelivered, s.Clock.Now())
}

func status(ctx context.Context, b Backend, id string, threshold int, esc, rate Window, warn, act float64, minDelivered int64, t time.Time) (CustomerStatus, error) {
	cs := CustomerStatus{Customer: id, FlagThreshold: threshold}
	if err := validList(id); err != nil || id == GlobalList {
		return cs, badRequest(err)
	}
	var err error
	if cs.Flag, err = b.GetFlag(ctx, id); err != nil {
		return cs, err
	}
	o, err := b.Sums(ctx, id, esc, t, KindOptedOut)
	if err != nil {
		return cs, err
	}
	cs.OptedOutSends = o[0]
	r, err := b.Sums(ctx, id, rate, t, KindDelivered, KindComplaint)
	if err != nil {
		return cs, err
	}
	cs.Delivered, cs.Complaints = r[0], r[1]
	cs.ComplaintRate, cs.RateLevel = rateLevel(cs.Complaints, cs.Delivered, warn, act, minDelivered)
	if cs.ListSize, err = b.Len(ctx, id); err != nil {
		return cs, err
	}
	if cs.Sources, err = b.Sources(ctx, id); err != nil {
		return cs, err
	}
	return cs, nil
}

// rateLevel judges a complaint rate against the thresholds (exceeding a
// threshold, not reaching it, moves up a level).
func rateLevel(complaints, delivered int64, warn, act float64, minDelivered int64) (float64, string) {
	if delivered == 0 {
		if complaints > 0 && minDelivered <= 0 {
			return 1, RateAct
		}
		return 0, RateLowVolume
	}
	r := float64(complaints) / float64(delivered)
	switch {
	case delivered < minDelivered:
		return r, RateLowVolume
	case r > act:
		return r, RateAct
	case r > warn:
		return r, RateWarn
	}
	return r, RateOK
}

// TrendPoint is one bucket of a customer's complaint-rate trend.
type TrendPoint struct {
	// Start is the bucket's start; the bucket is the complaint window
	// divided in 24 (7 h for the default 7 days).
	Start      time.Time `json:"start"`
	Complaints int64     `json:"complaints"`
	Delivered  int64     `json:"delivered"`
	// Rate is Complaints/Delivered, 0 when nothing was delivered.
	Rate float64 `json:"rate"`
}

// Trend reads the complaint window's buckets of a customer's delivered
// and complaint counters: the complaint rate over time, oldest first,
// from the first bucket with any count to the current one (none when
// nothing was counted in the window).
func Trend(ctx context.Context, h *store.Handle, cfg *config.Config, customerID string) ([]TrendPoint, error) {
	if err := knownList(cfg, customerID); err != nil || customerID == GlobalList {
		return nil, badRequest(fmt.Errorf("bad customer id %q", customerID))
	}
	b, err := Open(h)
	if err != nil {
		return nil, err
	}
	ctx, cancel := h.Context(ctx)
	defer cancel()
	o, err := ConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	return trend(ctx, b, customerID, NewWindow(o.Complaints.Window), h.Clock.Now())
}

func trend(ctx context.Context, b Backend, id string, w Window, now time.Time) ([]TrendPoint, error) {
	d, err := b.Buckets(ctx, id, KindDelivered, w, now)
	if err != nil {
		return nil, err
	}
	c, err := b.Buckets(ctx, id, KindComplaint, w, now)
	if err != nil {
		return nil, err
	}
	cur := w.index(now)
	first := cur + 1
	for _, m := range []map[int64]int64{d, c} {
		for i, n := range m {
			if n != 0 && i < first {
				first = i
			}
		}
	}
	var out []TrendPoint
	for i := first; i <= cur; i++ {
		p := TrendPoint{Start: time.UnixMilli(i * w.size()).UTC(), Complaints: c[i], Delivered: d[i]}
		if p.Delivered > 0 {
			p.Rate = float64(p.Complaints) / float64(p.Delivered)
		}
		out = append(out, p)
	}
	return out, nil
}
