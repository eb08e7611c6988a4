package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
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
	b   Backend
	def Settings
	// resellers are the reseller-wide limits by reseller (tenancy.go); a
	// customer's per-login limits are in its Settings.
	resellers map[string]Settings
	secret    secrets.Key
	log       *slog.Logger
	looks     *lookCache
}

// New builds the volume checks on backend b (see Open) for cfg; secret
// hashes recipient addresses before they are used as counter keys; clk
// ages the cached looks at the counters (nil: the system clock). An error
// is a bad spike: section (ConfigOf).
func New(b Backend, cfg *config.Config, secret secrets.Key, clk clock.Clock, log *slog.Logger) (*Checks, error) {
	sp, err := ConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	def := fromLimits(sp, cfg.Defaults.Limits)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clk == nil {
		clk = clock.System{}
	}
	return &Checks{b: b, def: def, resellers: resellerLimits(cfg, sp), secret: secret, log: log, looks: newLookCache(clk.Now)}, nil
}

func (c *Checks) settings(t *policy.Txn) Settings {
	return settingsOf(t.Customer, c.def)
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

// stateOf is rate_limit's per-message state.
var stateOf = policy.NewState[*txnState]()

// txnState is what rate_limit reserved for one message, and the counter
// runs it added to the current stage's batch.
type txnState struct {
	rcpt map[*policy.Rcpt][]Op
	msg  []Op
	// mail, rcptRun and eom are the runs of the stage in progress (nil
	// when the stage needs no store, or was not prepared).
	mail    *pendingRun
	mailSet bool
	rcptRun map[*policy.Rcpt]*pendingRun
	eom     *pendingRun
	eomSet  bool
}

func state(t *policy.Txn) *txnState {
	if s, ok := stateOf.Get(t); ok {
		return s
	}
	s := &txnState{rcpt: map[*policy.Rcpt][]Op{}}
	stateOf.Set(t, s)
	return s
}

// settle records the reservations of runs whose check never decided (an
// earlier check ended the stage): they are given back like any other
// reservation of a refused recipient or message.
func (rc rateCheck) settle(t *policy.Txn, st *txnState) {
	m := mode(t)
	for r, p := range st.rcptRun {
		if p == nil {
			delete(st.rcptRun, r)
			continue
		}
		if res, err := p.result(); err == nil {
			if k := p.kept(m, res); len(k) > 0 {
				st.rcpt[r] = k
			}
		}
		delete(st.rcptRun, r)
	}
	if p := st.eom; p != nil {
		st.eom = nil
		if res, err := p.result(); err == nil {
			applied := (res.Allowed || m == ModeForce) && m != ModeCheck
			rc.c.looks.record(t.Customer.ID, p.ops, res, applied)
			st.msg = p.kept(m, res)
		}
	}
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

// mailOps are the message counters the MAIL FROM look evaluates.
func (rc rateCheck) mailOps(t *policy.Txn) []Op {
	s := rc.c.settings(t)
	scs := rc.c.scopes(t)
	var ops []Op
	for _, l := range countedLimits {
		if l.perRcpt {
			continue
		}
		limit := l.get(s)
		if limit <= 0 && !scopesLimit(scs, l) {
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
		if limit > 0 {
			ops = append(ops, l.op(limit, n))
		}
		for _, sc := range scs {
			if sl := l.get(sc.s); sl > 0 {
				ops = append(ops, sc.op(l, sl, n))
			}
		}
	}
	return sortScopes(ops)
}

// sortScopes puts the reseller-wide ops last, in a stable order (one run
// holds them in their own part on a Redis Cluster, see slots); without a
// reseller-wide op, ops as they are.
func sortScopes(ops []Op) []Op {
	last := -1
	for i, op := range ops {
		if op.Scope == ScopeReseller {
			last = i
		}
	}
	if last < 0 {
		return ops
	}
	out := make([]Op, 0, len(ops))
	for _, op := range ops {
		if op.Scope != ScopeReseller {
			out = append(out, op)
		}
	}
	for _, op := range ops {
		if op.Scope == ScopeReseller {
			out = append(out, op)
		}
	}
	return out
}

// PrepareMail adds the MAIL FROM look to the stage's batch, unless the use
// the store reported in the last second shows room (lookCache).
func (rc rateCheck) PrepareMail(ctx context.Context, t *policy.Txn, b *policy.Batch) {
	st := state(t)
	st.mailSet = true
	st.mail = nil
	ops := rc.mailOps(t)
	if len(ops) == 0 || rc.c.looks.allows(t.Customer.ID, ops) {
		return
	}
	sb, own := rc.c.batchOf(b)
	st.mail = queueRun(sb, rc.c.b, t.Customer.ID, ModeCheck, ops)
	if own {
		_ = sb.Exec(ctx)
	}
}

// Mail looks at the message counters without reserving: a customer whose
// message rate or daily quota is exhausted is deferred at MAIL FROM,
// before it sends the data. The decision that counts is at end of message.
// The look asks the store only when the use it reported in the last second
// does not show room (lookCache).
func (rc rateCheck) Mail(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	st := state(t)
	if !st.mailSet {
		rc.PrepareMail(ctx, t, nil)
	}
	p := st.mail
	st.mail, st.mailSet = nil, false
	if p == nil {
		return nil, nil
	}
	r, err := p.result()
	if err != nil {
		return nil, err
	}
	rc.c.looks.record(t.Customer.ID, p.ops, r, false)
	return limitFindings(p.ops, r), nil
}

// rcptOps are the recipient counters of one recipient.
func (rc rateCheck) rcptOps(t *policy.Txn, rcpt *policy.Rcpt) []Op {
	s := rc.c.settings(t)
	var ops []Op
	scs := rc.c.scopes(t)
	for _, l := range countedLimits {
		if !l.perRcpt {
			continue
		}
		if limit := l.get(s); limit > 0 {
			ops = append(ops, l.op(limit, 1))
		}
		for _, sc := range scs {
			if sl := l.get(sc.s); sl > 0 {
				ops = append(ops, sc.op(l, sl, 1))
			}
		}
	}
	if s.PerRecipientPerHour > 0 || s.PerRecipientPerDay > 0 {
		// The recipient is a counter key only as a keyed hash of its
		// canonical form (case and +tag folded as configured).
		h := rc.c.secret.Hash("rcpt", rcpt.Addr.Canonical(s.CaseSensitiveLocal, s.FoldSubaddress))
		keep := time.Hour
		if s.PerRecipientPerDay > 0 {
			keep = 24 * time.Hour
		}
		if s.PerRecipientPerHour > 0 {
			ops = append(ops, Op{Kind: KindRecipient, Name: "per_recipient_per_hour", Key: "rcpt:" + h, Limit: s.PerRecipientPerHour, Period: time.Hour, N: 1, Keep: keep})
		}
		if s.PerRecipientPerDay > 0 {
			ops = append(ops, Op{Kind: KindRecipient, Name: "per_recipient_per_day", Key: "rcpt:" + h, Limit: s.PerRecipientPerDay, Period: 24 * time.Hour, N: 1, Keep: keep})
		}
	}
	return sortScopes(ops)
}

// PrepareRcpt adds to the stage's batch the release of earlier recipients
// that a later check refused (they would otherwise hold the quota until
// the end of the transaction) and this recipient's reservation.
func (rc rateCheck) PrepareRcpt(ctx context.Context, t *policy.Txn, rcpt *policy.Rcpt, b *policy.Batch) {
	st := state(t)
	if st.rcptRun == nil {
		st.rcptRun = map[*policy.Rcpt]*pendingRun{}
	}
	ops := rc.rcptOps(t, rcpt)
	if len(ops) == 0 {
		st.rcptRun[rcpt] = nil
		return
	}
	sb, own := rc.c.batchOf(b)
	rc.giveBackRefused(t, st, sb)
	st.rcptRun[rcpt] = queueRun(sb, rc.c.b, t.Customer.ID, mode(t), ops)
	if own {
		_ = sb.Exec(ctx)
	}
}

// Rcpt reserves the recipient counters for this recipient.
func (rc rateCheck) Rcpt(ctx context.Context, t *policy.Txn, rcpt *policy.Rcpt) ([]policy.Finding, error) {
	st := state(t)
	if _, ok := st.rcptRun[rcpt]; !ok {
		rc.PrepareRcpt(ctx, t, rcpt, nil)
	}
	p := st.rcptRun[rcpt]
	delete(st.rcptRun, rcpt)
	if p == nil {
		return nil, nil
	}
	r, err := p.result()
	if err != nil {
		return nil, err
	}
	if k := p.kept(mode(t), r); len(k) > 0 {
		// A recipient refused here, whose split run (Redis Cluster) wrote
		// one part, is not in t.Rcpts: that part is given back.
		st.rcpt[rcpt] = k
	}
	return limitFindings(p.ops, r), nil
}

// giveBackRefused adds to sb the release of the reservations of earlier
// recipients that a later check refused (they are not in t.Rcpts). It
// costs nothing when nothing was refused; when the release fails the
// reservation stays counted (the counters err towards refusing).
func (rc rateCheck) giveBackRefused(t *policy.Txn, st *txnState, sb *store.Batch) {
	rc.settle(t, st)
	if len(st.rcpt) == 0 {
		return
	}
	in := make(map[*policy.Rcpt]bool, len(t.Rcpts))
	for _, r := range t.Rcpts {
		in[r] = true
	}
	var give []Op
	for r, ops := range st.rcpt {
		if !in[r] {
			give = append(give, ops...)
			delete(st.rcpt, r)
		}
	}
	if len(give) > 0 {
		queueRelease(sb, rc.c.b, t.Customer.ID, give)
	}
}

// eomOps are the message counters and the spike detector.
func (rc rateCheck) eomOps(t *policy.Txn) []Op {
	s := rc.c.settings(t)
	var ops []Op
	scs := rc.c.scopes(t)
	for _, l := range countedLimits {
		if l.perRcpt {
			continue
		}
		n := int64(1)
		if l.unit == "bytes" {
			n = t.Size()
		}
		if limit := l.get(s); limit > 0 {
			ops = append(ops, l.op(limit, n))
		}
		for _, sc := range scs {
			if sl := l.get(sc.s); sl > 0 {
				ops = append(ops, sc.op(l, sl, n))
			}
		}
	}
	if s.SpikeEnabled {
		ops = append(ops, Op{Kind: KindSpike, Name: FindingSpike, Key: "spike", Period: s.SpikeWindow, N: 1, Spike: s.Spike})
	}
	return sortScopes(ops)
}

// scopesLimit reports whether a login or reseller scope sets limit l.
func scopesLimit(scs []scope, l counted) bool {
	for _, sc := range scs {
		if l.get(sc.s) > 0 {
			return true
		}
	}
	return false
}

// PrepareEOM adds the message counters' reservation and the spike
// detector to the stage's batch.
func (rc rateCheck) PrepareEOM(ctx context.Context, t *policy.Txn, b *policy.Batch) {
	st := state(t)
	st.eomSet = true
	st.eom = nil
	ops := rc.eomOps(t)
	if len(ops) == 0 {
		return
	}
	sb, own := rc.c.batchOf(b)
	rc.giveBackRefused(t, st, sb)
	st.eom = queueRun(sb, rc.c.b, t.Customer.ID, mode(t), ops)
	if own {
		_ = sb.Exec(ctx)
	}
}

// EOM reserves the message counters and runs the spike detector.
func (rc rateCheck) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	st := state(t)
	if !st.eomSet {
		rc.PrepareEOM(ctx, t, nil)
	}
	p := st.eom
	st.eom, st.eomSet = nil, false
	if p == nil {
		return nil, nil
	}
	ops := p.ops
	r, err := p.result()
	if err != nil {
		return nil, err
	}
	s := rc.c.settings(t)
	m := mode(t)
	applied := (r.Allowed || m == ModeForce) && m != ModeCheck
	rc.c.looks.record(t.Customer.ID, ops, r, applied)
	st.msg = p.kept(m, r)
	f := limitFindings(ops, r)
	if si := spikeAt(ops); si >= 0 && applied {
		if o := r.Ops[si]; o.Flagged {
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

// PrepareFinish keeps the reservations of an accepted message's accepted
// recipients and gives back the rest, in the chain's finish batch (no
// store work at all when there is nothing to give back, the common case).
func (rc rateCheck) PrepareFinish(ctx context.Context, t *policy.Txn, accepted bool, b *policy.Batch) {
	st, ok := stateOf.Get(t)
	if !ok {
		return
	}
	rc.settle(t, st)
	stateOf.Clear(t)
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
	sb, own := rc.c.batchOf(b)
	ref, customer := t.Ref, t.Customer.ID
	for _, c := range queueRelease(sb, rc.c.b, customer, give) {
		c.Then(func(_ any, err error) {
			if err != nil {
				// The reservation stays counted: the counters err towards refusing.
				rc.c.log.Warn("rate_limit: release failed, reservation stays counted", "ref", ref, "customer", customer, "err", err)
			}
		})
	}
	if own {
		_ = sb.Exec(ctx)
	}
}

// spikeAt is the index of the spike detector's op, -1 without one.
func spikeAt(ops []Op) int {
	for i, op := range ops {
		if op.Kind == KindSpike {
			return i
		}
	}
	return -1
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
	name := op.Name
	if op.Scope != "" {
		// Whose limit: the login's or the reseller's, not the customer's.
		f.Attrs["scope"], f.Attrs[op.Scope] = op.Scope, op.Owner
		f.Detail = op.Scope + " " + op.Owner + ": " + f.Detail
		name = op.Scope + " " + op.Name
	}
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
		f.Reply = policy.MustReply(451, "4.7.1", "Daily quota reached ("+name+"), retry in "+retry)
	default:
		f.Name = FindingRate
		f.Reply = policy.MustReply(451, "4.7.1", "Rate limit reached ("+name+"), retry in "+retry)
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
