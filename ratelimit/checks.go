package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aupguard/aupguard/clock"
	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/policy"
	"github.com/aupguard/aupguard/secrets"
)

// Check names.
const (
	SizeName    = "message_size"
	RcptCapName = "recipients_per_message"
	RateName    = "rate_limit"
)

// Finding names.
const (
	// FindingTooLarge: the message (declared or received) is larger than
	// the customer's message_size.
	FindingTooLarge = "message_too_large"
	// FindingTooManyRcpts: one more recipient than recipients_per_message.
	FindingTooManyRcpts = "too_many_recipients"
	// FindingRate: a smooth rate (messages_per_minute, messages_per_hour,
	// recipients_per_hour) is exhausted.
	FindingRate = "rate_limit_exceeded"
	// FindingQuota: a daily quota (messages_per_day, recipients_per_day,
	// bytes_per_day) is reached.
	FindingQuota = "quota_exceeded"
	// FindingRcptFrequency: too many messages to one recipient
	// (per_recipient_per_hour, per_recipient_per_day): mailbombing.
	FindingRcptFrequency = "recipient_frequency"
	// FindingSpike: the short window is far above the customer's baseline.
	FindingSpike = "volume_spike"
)

var (
	// RFC 1870 §6.1 (552 at MAIL FROM for a SIZE over the fixed maximum),
	// RFC 3463 §3.4: X.3.4 message too big for system.
	replyTooLarge = policy.MustReply(552, "5.3.4", "Message size exceeds the limit for this account")
	// RFC 5321 §4.5.3.1.10: a server that limits recipients answers 452 to
	// the further RCPT commands; RFC 3463 §3.6: X.5.3 too many recipients.
	replyTooManyRcpts = policy.MustReply(452, "4.5.3", "Too many recipients, send the rest in another message")
	// RFC 3463 §3.8: X.7.1 delivery not authorized (here: not now).
	replySpike = policy.MustReply(451, "4.7.1", "Unusual sending volume, deferred; try again later")
)

// Checks are the volume checks of one config. Build them with New.
type Checks struct {
	b      Backend
	def    Settings
	per    map[string]Settings
	secret secrets.Key
	log    *slog.Logger
	looks  *lookCache
}

// New builds the volume checks on backend b (see Open) for cfg; secret
// hashes recipient addresses before they are used as counter keys; clk
// ages the cached looks at the counters (nil: the system clock).
func New(b Backend, cfg *config.Config, secret secrets.Key, clk clock.Clock, log *slog.Logger) *Checks {
	def, per := settingsByCustomer(cfg)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.System{}
	}
	return &Checks{b: b, def: def, per: per, secret: secret, log: log, looks: newLookCache(clk.Now)}
}

func (c *Checks) settings(t *policy.Txn) Settings {
	if s, ok := c.per[t.Customer.ID]; ok {
		return s
	}
	return c.def
}

// Size returns the message_size check.
func (c *Checks) Size() policy.Check { return sizeCheck{c} }

// RcptCap returns the recipients_per_message check.
func (c *Checks) RcptCap() policy.Check { return rcptCapCheck{c} }

// Rate returns the rate_limit check.
func (c *Checks) Rate() policy.Check { return rateCheck{c} }

// sizeCheck refuses a message larger than the customer's message_size.
type sizeCheck struct{ c *Checks }

func (sizeCheck) Name() string { return SizeName }

func (s sizeCheck) finding(size, limit int64, declared bool) []policy.Finding {
	what := "size"
	if declared {
		what = "declared SIZE"
	}
	return []policy.Finding{{
		Name:   FindingTooLarge,
		Detail: fmt.Sprintf("message_size: %s %d bytes over limit %d", what, size, limit),
		Action: policy.Reject,
		Reply:  replyTooLarge,
		Attrs:  map[string]string{"limit": "message_size", "limit_value": strconv.FormatInt(limit, 10), "size": strconv.FormatInt(size, 10)},
	}}
}

// Mail refuses a declared SIZE over the limit before any data is sent
// (RFC 1870 §4 and §6.1).
func (s sizeCheck) Mail(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	limit := s.c.settings(t).MessageSize
	if limit <= 0 {
		return nil, nil
	}
	n, err := strconv.ParseInt(t.MailArgs["SIZE"], 10, 64)
	if err != nil || n <= limit {
		return nil, nil // no or unparsable SIZE: the real size is checked at EOM
	}
	return s.finding(n, limit, true), nil
}

// EOM checks the size received: SIZE= is optional and may understate.
func (s sizeCheck) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	limit := s.c.settings(t).MessageSize
	if limit <= 0 || t.Size() <= limit {
		return nil, nil
	}
	return s.finding(t.Size(), limit, false), nil
}

// rcptCapCheck answers 452 4.5.3 to the recipients over the cap.
type rcptCapCheck struct{ c *Checks }

func (rcptCapCheck) Name() string { return RcptCapName }

// Rcpt counts the recipients accepted so far: one refused by any check is
// not in t.Rcpts and does not count (RFC 5321 §4.5.3.1.10).
func (r rcptCapCheck) Rcpt(_ context.Context, t *policy.Txn, _ *policy.Rcpt) ([]policy.Finding, error) {
	limit := r.c.settings(t).RecipientsPerMessage
	if limit <= 0 || int64(len(t.Rcpts)) < limit {
		return nil, nil
	}
	return []policy.Finding{{
		Name:   FindingTooManyRcpts,
		Detail: fmt.Sprintf("recipients_per_message: %d accepted, limit %d", len(t.Rcpts), limit),
		Action: policy.Defer,
		Reply:  replyTooManyRcpts,
		Attrs:  map[string]string{"limit": "recipients_per_message", "limit_value": strconv.FormatInt(limit, 10)},
	}}, nil
}

// rateCheck is the counter-backed check: rates, quotas, per-recipient
// frequency and spikes.
type rateCheck struct{ c *Checks }

func (rateCheck) Name() string { return RateName }

type stateKey struct{}

// txnState is what rate_limit reserved for one message.
type txnState struct {
	rcpt map[*policy.Rcpt][]Op
	msg  []Op
	seq  int
}

func state(t *policy.Txn) *txnState {
	if s, ok := t.Value(stateKey{}).(*txnState); ok {
		return s
	}
	s := &txnState{rcpt: map[*policy.Rcpt][]Op{}}
	t.SetValue(stateKey{}, s)
	return s
}

func mode(t *policy.Txn) Mode {
	if t.DryRun {
		// A dry run (explain) reads the counters and writes nothing: the
		// limits are judged as they stand, the spike detector (which must
		// count to judge) is not run.
		return ModeCheck
	}
	if t.Customer.Mode == policy.Monitor {
		// The mail is going to be accepted whatever is found: count it.
		return ModeForce
	}
	return ModeReserve
}

// reserved returns ops with the buckets the backend reserved them in.
func reserved(ops []Op, r Result) []Op {
	out := make([]Op, 0, len(ops))
	for i, op := range ops {
		if op.Kind == KindSpike {
			continue // the spike detector counts attempts; nothing to give back
		}
		op.Bucket = r.Ops[i].Bucket
		out = append(out, op)
	}
	return out
}

// Mail looks at the message counters without reserving: a customer whose
// message rate or daily quota is exhausted is deferred at MAIL FROM,
// before it sends the data. The decision that counts is at end of message.
// The look asks the store only when the use it reported in the last second
// does not show room (lookCache).
func (rc rateCheck) Mail(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	s := rc.c.settings(t)
	var ops []Op
	for _, l := range countedLimits {
		limit := l.get(s)
		if limit <= 0 || l.perRcpt {
			continue
		}
		n := int64(1)
		if l.unit == "bytes" {
			// RFC 1870 §4: SIZE is the client's estimate; without it, bytes
			// are only counted at end of message.
			n, _ = strconv.ParseInt(t.MailArgs["SIZE"], 10, 64)
			if n <= 0 {
				continue
			}
		}
		ops = append(ops, l.op(limit, n))
	}
	if len(ops) == 0 || rc.c.looks.allows(t.Customer.ID, ops) {
		return nil, nil
	}
	r, err := rc.c.b.Run(ctx, t.Customer.ID, ModeCheck, ops)
	if err != nil {
		return nil, err
	}
	rc.c.looks.record(t.Customer.ID, ops, r, false)
	return limitFindings(ops, r), nil
}

// Rcpt reserves the recipient counters for this recipient.
func (rc rateCheck) Rcpt(ctx context.Context, t *policy.Txn, rcpt *policy.Rcpt) ([]policy.Finding, error) {
	s := rc.c.settings(t)
	var ops []Op
	for _, l := range countedLimits {
		if limit := l.get(s); limit > 0 && l.perRcpt {
			ops = append(ops, l.op(limit, 1))
		}
	}
	if s.PerRecipientPerHour > 0 || s.PerRecipientPerDay > 0 {
		st := state(t)
		st.seq++
		// The recipient is a counter key only as a keyed hash of its
		// canonical form (case and +tag folded as configured).
		h := rc.c.secret.Hash("rcpt", rcpt.Addr.Canonical(s.CaseSensitiveLocal, s.FoldSubaddress))
		member := t.Ref + ":" + strconv.Itoa(st.seq)
		keep := time.Hour
		if s.PerRecipientPerDay > 0 {
			keep = 24 * time.Hour
		}
		if s.PerRecipientPerHour > 0 {
			ops = append(ops, Op{Kind: KindRecipient, Name: "per_recipient_per_hour", Key: "rcpt:" + h, Limit: s.PerRecipientPerHour, Period: time.Hour, N: 1, Member: member, Keep: keep})
		}
		if s.PerRecipientPerDay > 0 {
			ops = append(ops, Op{Kind: KindRecipient, Name: "per_recipient_per_day", Key: "rcpt:" + h, Limit: s.PerRecipientPerDay, Period: 24 * time.Hour, N: 1, Member: member, Keep: keep})
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	if err := rc.giveBackRefused(ctx, t); err != nil {
		return nil, err
	}
	m := mode(t)
	r, err := rc.c.b.Run(ctx, t.Customer.ID, m, ops)
	if err != nil {
		return nil, err
	}
	if (r.Allowed || m == ModeForce) && m != ModeCheck {
		state(t).rcpt[rcpt] = reserved(ops, r)
	}
	return limitFindings(ops, r), nil
}

// giveBackRefused releases, before the next recipient is counted, the
// reservations of earlier recipients that a later check refused (they are
// not in t.Rcpts): otherwise they would hold the quota until the end of
// the transaction. This costs a round trip only when it happens.
func (rc rateCheck) giveBackRefused(ctx context.Context, t *policy.Txn) error {
	st, ok := t.Value(stateKey{}).(*txnState)
	if !ok || len(st.rcpt) == 0 {
		return nil
	}
	in := make(map[*policy.Rcpt]bool, len(t.Rcpts))
	for _, r := range t.Rcpts {
		in[r] = true
	}
	var give []Op
	var refused []*policy.Rcpt
	for r, ops := range st.rcpt {
		if !in[r] {
			give = append(give, ops...)
			refused = append(refused, r)
		}
	}
	if len(give) == 0 {
		return nil
	}
	if err := rc.c.b.Release(ctx, t.Customer.ID, give); err != nil {
		return err
	}
	for _, r := range refused {
		delete(st.rcpt, r)
	}
	return nil
}

// EOM reserves the message counters and runs the spike detector.
func (rc rateCheck) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	s := rc.c.settings(t)
	var ops []Op
	for _, l := range countedLimits {
		if limit := l.get(s); limit > 0 && !l.perRcpt {
			n := int64(1)
			if l.unit == "bytes" {
				n = t.Size()
			}
			ops = append(ops, l.op(limit, n))
		}
	}
	if s.SpikeEnabled {
		ops = append(ops, Op{Kind: KindSpike, Name: FindingSpike, Key: "spike", Period: s.SpikeWindow, N: 1, Spike: s.Spike})
	}
	if len(ops) == 0 {
		return nil, nil
	}
	m := mode(t)
	r, err := rc.c.b.Run(ctx, t.Customer.ID, m, ops)
	if err != nil {
		return nil, err
	}
	applied := (r.Allowed || m == ModeForce) && m != ModeCheck
	rc.c.looks.record(t.Customer.ID, ops, r, applied)
	if applied {
		state(t).msg = reserved(ops, r)
	}
	f := limitFindings(ops, r)
	if s.SpikeEnabled && applied {
		if o := r.Ops[len(ops)-1]; o.Flagged {
			f = append(f, policy.Finding{
				Name: FindingSpike,
				Detail: fmt.Sprintf("volume_spike: %d messages in the last %s, threshold %.1f (factor %g x baseline %.1f/h, floor %d)",
					o.Count, s.SpikeWindow, o.Threshold, s.Spike.Factor, o.Baseline, s.Spike.Floor),
				Action: policy.Defer,
				Reply:  replySpike,
				Attrs: map[string]string{
					"limit": FindingSpike, "count": strconv.FormatInt(o.Count, 10),
					"threshold": strconv.FormatFloat(o.Threshold, 'f', 1, 64), "baseline": strconv.FormatFloat(o.Baseline, 'f', 1, 64),
					"window": s.SpikeWindow.String(),
				},
			})
		}
	}
	return f, nil
}

// Finish keeps the reservations of an accepted message's accepted
// recipients and gives back the rest, in one round trip (none when there
// is nothing to give back, the common case).
func (rc rateCheck) Finish(ctx context.Context, t *policy.Txn, accepted bool) {
	st, ok := t.Value(stateKey{}).(*txnState)
	if !ok {
		return
	}
	t.SetValue(stateKey{}, nil)
	var give []Op
	if !accepted {
		give = append(give, st.msg...)
	}
	kept := map[*policy.Rcpt]bool{}
	if accepted {
		for _, r := range t.Rcpts {
			kept[r] = true
		}
	}
	for r, ops := range st.rcpt {
		if !kept[r] {
			give = append(give, ops...)
		}
	}
	if len(give) == 0 {
		return
	}
	if err := rc.c.b.Release(ctx, t.Customer.ID, give); err != nil {
		// The reservation stays counted: the counters err towards refusing.
		rc.c.log.Warn("rate_limit: release failed, reservation stays counted", "ref", t.Ref, "customer", t.Customer.ID, "err", err)
	}
}

// limitFindings turns a refused Run into the finding of its binding limit.
func limitFindings(ops []Op, r Result) []policy.Finding {
	if r.Allowed || r.Binding < 0 {
		return nil
	}
	op, o := ops[r.Binding], r.Ops[r.Binding]
	retry := fmtRetry(r.Retry)
	f := policy.Finding{
		Action: policy.Defer,
		Attrs: map[string]string{
			"limit": op.Name, "limit_value": strconv.FormatInt(op.Limit, 10), "period": op.Period.String(),
			"used": strconv.FormatInt(o.Used, 10), "retry_after": strconv.FormatInt(int64(r.Retry.Round(time.Second)/time.Second), 10),
		},
	}
	f.Detail = fmt.Sprintf("%s: %d per %s reached (in use %d, this one %d), retry in %s", op.Name, op.Limit, op.Period, o.Used, op.N, retry)
	switch op.Kind {
	case KindRecipient:
		// RFC 5321 §4.2.5: 450 for a mailbox-specific temporary refusal;
		// RFC 3463 §3.8 X.7.1.
		f.Name = FindingRcptFrequency
		f.Reply = policy.MustReply(450, "4.7.1", "Too many messages to this recipient ("+op.Name+"), retry in "+retry)
	case KindWindow:
		// The daily quota frees when its oldest counted bucket leaves the
		// window: the deferral says when.
		f.Name = FindingQuota
		f.Reply = policy.MustReply(451, "4.7.1", "Daily quota reached ("+op.Name+"), retry in "+retry)
	default:
		f.Name = FindingRate
		f.Reply = policy.MustReply(451, "4.7.1", "Rate limit reached ("+op.Name+"), retry in "+retry)
	}
	return []policy.Finding{f}
}

// fmtRetry renders a wait for a reply text: rounded up to the second under
// a minute, to the minute above ("40s", "3m", "2h10m").
func fmtRetry(d time.Duration) string {
	if d < time.Second {
		d = time.Second
	}
	if d < time.Minute {
		return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) + "s"
	}
	m := int64((d + time.Minute - 1) / time.Minute)
	if m < 60 {
		return strconv.FormatInt(m, 10) + "m"
	}
	if m%60 == 0 {
		return strconv.FormatInt(m/60, 10) + "h"
	}
	return strconv.FormatInt(m/60, 10) + "h" + strconv.FormatInt(m%60, 10) + "m"
}
