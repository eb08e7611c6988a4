package optout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
)

// Check names.
const (
	SuppressionName = "optout_suppression"
	BulkName        = "bulk_mail"
	StampName       = "feedback_stamp"
	UnsubscribeName = "unsubscribe_link"
)

// Findings.
const (
	FindingOptedOut        = "recipient_opted_out"
	FindingSuppressed      = "recipient_suppressed"
	FindingEscalation      = "optout_escalation"
	FindingMissingOneClick = "bulk_missing_one_click"
	FindingNotAligned      = "bulk_not_dkim_aligned"
	FindingDKIMUnknown     = "bulk_dkim_unknown"
	FindingFlagged         = "customer_flagged"
	FindingRateWarn        = "complaint_rate_warn"
	FindingRateHigh        = "complaint_rate_high"
)

// Replies. RFC 3463 §3.8: X.7.1, delivery not authorized, message refused.
var (
	ReplyOptedOut   = policy.MustReply(550, "5.7.1", "Recipient has opted out of mail from this sender")
	ReplySuppressed = policy.MustReply(550, "5.7.1", "Recipient does not accept mail from this sender")
	ReplyNotAligned = policy.MustReply(550, "5.7.1", "Bulk mail must be DKIM-signed by the From domain")
	// ReplyFlagged and ReplyRateHigh are temporary: RFC 3463 §3.8 X.7.1 in
	// its persistent transient form, the postmaster may clear it.
	ReplyFlagged  = policy.MustReply(451, "4.7.1", "Bulk mail from this sender is on hold, contact your provider")
	ReplyRateHigh = policy.MustReply(451, "4.7.1", "Bulk mail from this sender is suspended: complaint rate too high")
)

// Suppression is the optout_suppression check: at RCPT TO, a recipient on
// the customer's list or the provider-wide list is refused, that recipient
// only (the AUP: "continue to send email messages to a recipient that has
// indicated they do not wish to receive them"). Each refusal counts toward
// the customer's escalation.
type Suppression struct {
	svc *Service
}

// NewSuppression builds the optout_suppression check.
func NewSuppression(svc *Service) *Suppression { return &Suppression{svc: svc} }

// Name implements policy.Check.
func (c *Suppression) Name() string { return SuppressionName }

// lookupsOf are suppression's prepared lookups of the message, by recipient.
var lookupsOf = policy.NewState[map[*policy.Rcpt]*pendingLookup]()

// PrepareRcpt implements policy.RcptPreparer: the lookup (and the
// escalation count of a listed recipient) goes into the stage's batch.
func (c *Suppression) PrepareRcpt(ctx context.Context, t *policy.Txn, r *policy.Rcpt, b *policy.Batch) {
	pend, _ := lookupsOf.Get(t)
	if pend == nil {
		pend = map[*policy.Rcpt]*pendingLookup{}
		lookupsOf.Set(t, pend)
	}
	canon, err := c.svc.Settings.canonicalAddr(r.Addr)
	if err != nil {
		pend[r] = nil // not an address that can be on a list
		return
	}
	h := c.svc.Settings.Hash(canon)
	sb, own := c.svc.batchOf(b)
	p := &pendingLookup{hash: h, l: c.svc.queueLookup(sb, t.Customer.ID, h, t.DryRun)}
	if c.svc.Settings.FoldSubaddress {
		if full := r.Addr.Canonical(c.svc.Settings.CaseSensitive, false); full != canon {
			p.full = c.svc.Settings.Hash(full)
		}
	}
	pend[r] = p
	if own {
		ctx, cancel := c.svc.ctx(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// pendingLookup is one recipient's lookup in the stage's batch.
type pendingLookup struct {
	hash string
	// full is the hash of the unfolded "user+tag" form when sub-addresses
	// are folded and the recipient has one ("" otherwise).
	full string
	l    *lookup
}

// Rcpt implements policy.RcptChecker.
func (c *Suppression) Rcpt(ctx context.Context, t *policy.Txn, r *policy.Rcpt) ([]policy.Finding, error) {
	pend, _ := lookupsOf.Get(t)
	if _, ok := pend[r]; !ok {
		c.PrepareRcpt(ctx, t, r, nil)
		pend, _ = lookupsOf.Get(t)
	}
	p := pend[r]
	delete(pend, r)
	if p == nil {
		return nil, nil
	}
	h := p.hash
	ctx, cancel := c.svc.ctx(ctx)
	defer cancel()
	list, hits, raised, err, hitErr := p.l.result(ctx, c.svc, t.Customer.ID)
	if err == nil && list == "" && p.full != "" {
		// An entry recorded while sub-addresses were not folded is stored
		// under the full "user+tag" form: it still suppresses. This second
		// lookup happens only for such recipients not found folded.
		if list, err = c.svc.Backend.Lookup(ctx, t.Customer.ID, p.full); err == nil && list != "" && !t.DryRun {
			s := c.svc.Settings
			hits, raised, hitErr = c.svc.Backend.Hit(ctx, t.Customer.ID, s.Escalation, s.Threshold, c.svc.Clock.Now())
		}
	}
	if err != nil || list == "" {
		return nil, err
	}
	f := policy.Finding{Name: FindingOptedOut, Action: policy.Reject, Reply: ReplyOptedOut,
		Detail: "recipient " + h + " is on the customer's suppression list", Attrs: map[string]string{"rcpt_hash": h, "list": "customer"}}
	if list == GlobalList {
		f = policy.Finding{Name: FindingSuppressed, Action: policy.Reject, Reply: ReplySuppressed,
			Detail: "recipient " + h + " is on the provider-wide suppression list", Attrs: map[string]string{"rcpt_hash": h, "list": "global"}}
	}
	out := []policy.Finding{f}
	if t.DryRun {
		// A dry run refuses as the gateway would but counts nothing.
		return out, nil
	}
	s := c.svc.Settings
	if hitErr != nil {
		// The refusal stands; only the count failed.
		c.svc.Log.Error("counting a send to an opted-out recipient failed", "customer", t.Customer.ID, "err", hitErr)
		return out, nil
	}
	f.Attrs["hits"] = strconv.FormatInt(hits, 10)
	if raised {
		c.svc.Log.Warn("customer flagged", "event", "customer_flagged", "customer", t.Customer.ID,
			"reason", "opted_out_sends", "hits", hits, "window", s.Escalation.Width.String())
		out = append(out, policy.Finding{Name: FindingEscalation, Action: policy.Accept,
			Detail: fmt.Sprintf("%d sends to opted-out recipients within %s: customer flagged", hits, s.Escalation.Width),
			Attrs:  map[string]string{"hits": strconv.FormatInt(hits, 10), "threshold": strconv.Itoa(s.Threshold)}})
	}
	return out, nil
}

// CustomerBulk is one customer's bulk settings.
type CustomerBulk struct {
	// AddUnsubscribe: the gateway adds one-click headers when missing.
	AddUnsubscribe bool
	// FingerprintRecipients: more recipients than this for one body within
	// the window make it bulk; -1 turns fingerprinting off.
	FingerprintRecipients int
}

// Bulk is the bulk_mail check. A message is bulk when it says so
// (Precedence: bulk or list, RFC 2076 §3.9 / RFC 3834 §3.1.8; a List-Id,
// RFC 2919) or when its body went to more than N recipients within the
// window. Bulk mail must carry RFC 8058 one-click unsubscribe headers and
// be DKIM-aligned; a flagged customer's, or one with too high a complaint
// rate, gets the configured action. It also counts delivered recipients.
type Bulk struct {
	svc *Service
	// Aligned reports DKIM alignment of the message (auth.DKIMAligned).
	Aligned func(t *policy.Txn) (aligned, known bool)
	// Default is the provider-wide setting; a customer's own is in its
	// Settings (CustomerSection).
	Default CustomerBulk
}

// fingerprintOf is bulk_mail's body fingerprint of the message.
var fingerprintOf = policy.NewState[*fingerprint]()

// BulkBy is bulk_mail's output: why it judged the message bulk
// ("precedence", "list_id", "fingerprint"); unset when it did not (or did
// not run yet). A check that reads it needs bulk_mail (Spec.Needs).
var BulkBy = policy.NewOutput[string](BulkName)

// unsubOf is the canonical address whose unsubscribe link the message gets.
var unsubOf = policy.NewState[string]()

// NewBulk builds the bulk_mail check from the service's settings.
func NewBulk(svc *Service, aligned func(*policy.Txn) (bool, bool)) *Bulk {
	return &Bulk{svc: svc, Aligned: aligned, Default: svc.Settings.Bulk}
}

// Name implements policy.Check.
func (b *Bulk) Name() string { return BulkName }

// settings returns the bulk settings of a message's customer: its own,
// made when it was validated (CustomerSection), or Default.
func (b *Bulk) settings(c *policy.Customer) CustomerBulk {
	if cb, ok := policy.SettingsOf[CustomerBulk](c.Settings, CustomerSection.Family); ok {
		return cb
	}
	return b.Default
}

// Body implements policy.BodyChecker: the body's fingerprint is computed as
// it streams.
func (b *Bulk) Body(t *policy.Txn) io.Writer {
	if b.settings(t.Customer).FingerprintRecipients < 0 {
		return nil
	}
	w := newFingerprint()
	fingerprintOf.Set(t, w)
	return w
}

// bulkOf is what bulk_mail keeps for the message between its stages.
var bulkOf = policy.NewState[*bulkTxn]()

// signals says why the message is bulk by its headers ("precedence",
// "list_id" or "") and returns its body fingerprint ("" for none).
func (b *Bulk) signals(t *policy.Txn, cb CustomerBulk) (by, fp string) {
	// RFC 2076 §3.9 / RFC 3834 §3.1.8: Precedence bulk or list.
	for _, v := range t.HeaderValues("Precedence") {
		if p := strings.ToLower(unfold(v)); p == "bulk" || p == "list" {
			by = "precedence"
		}
	}
	// RFC 2919 §3: a List-Id names a mailing list.
	if by == "" && len(t.HeaderValues("List-Id")) > 0 {
		by = "list_id"
	}
	if w, ok := fingerprintOf.Get(t); ok && cb.FingerprintRecipients >= 0 && !t.DryRun {
		// The fingerprint count is judged by counting this message: a dry
		// run leaves it out (docs/optout.md) and reads only the rest.
		fp = w.sum()
	}
	return by, fp
}

// bulkTxn is what bulk_mail keeps for one message between its stages.
type bulkTxn struct {
	by, fp string
	p      *bulkPending
}

// PrepareEOM implements policy.EOMPreparer: the fingerprint count, the
// reservation of the delivered recipients (given back in PrepareFinish when
// the message is refused) and, for bulk candidates, the flag and the
// complaint-rate sums go into the stage's batch.
func (b *Bulk) PrepareEOM(ctx context.Context, t *policy.Txn, bt *policy.Batch) {
	cb := b.settings(t.Customer)
	by, fp := b.signals(t, cb)
	x := &bulkTxn{by: by, fp: fp}
	bulkOf.Set(t, x)
	if len(t.Rcpts) == 0 && by == "" && fp == "" {
		return
	}
	sb, own := b.svc.batchOf(bt)
	x.p = b.svc.queueEOM(sb, t.Customer.ID, fp, int64(len(t.Rcpts)), by != "", cb.FingerprintRecipients, t.DryRun)
	if own {
		ctx, cancel := b.svc.ctx(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// EOM implements policy.EOMChecker.
func (b *Bulk) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	cb := b.settings(t.Customer)
	x, ok := bulkOf.Get(t)
	if !ok {
		b.PrepareEOM(ctx, t, nil)
		x, _ = bulkOf.Get(t)
	}
	by, fp := x.by, x.fp
	if by == "" && fp == "" {
		return nil, nil
	}
	s := b.svc.Settings
	st, err := x.p.result()
	if err != nil && by == "" {
		return nil, err
	}
	if by == "" {
		if st.Fingerprint <= int64(cb.FingerprintRecipients) {
			return nil, nil
		}
		by = "fingerprint"
	}
	BulkBy.Set(t, by)
	attrs := func(kv ...string) map[string]string {
		m := map[string]string{"bulk_by": by}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	var out []policy.Finding
	if f, ok := b.oneClick(t, cb, attrs); !ok {
		out = append(out, f)
	}
	if b.Aligned != nil {
		// RFC 8058 §4 and the large receivers' sender rules: the one-click
		// headers only count when DKIM-signed by an aligned domain.
		switch aligned, known := b.Aligned(t); {
		case !known:
			out = append(out, policy.Finding{Name: FindingDKIMUnknown, Action: policy.Accept, Detail: "DKIM alignment of bulk mail unknown", Attrs: attrs()})
		case !aligned:
			out = append(out, policy.Finding{Name: FindingNotAligned, Action: policy.Reject, Reply: ReplyNotAligned,
				Detail: "bulk mail (" + by + ") without a DKIM signature aligned with the From domain", Attrs: attrs()})
		}
	} else {
		out = append(out, policy.Finding{Name: FindingDKIMUnknown, Action: policy.Accept, Detail: "no DKIM alignment source configured", Attrs: attrs()})
	}
	if err != nil {
		return out, err
	}
	if st.Flag != nil {
		out = append(out, policy.Finding{Name: FindingFlagged, Action: policy.Accept, Reply: ReplyFlagged,
			Detail: fmt.Sprintf("bulk mail of a flagged customer (%s since %s)", st.Flag.Reason, st.Flag.Since.Format("2006-01-02T15:04:05Z")),
			Attrs:  attrs("reason", st.Flag.Reason)})
	}
	rate, level := rateLevel(st.Complaints, st.Delivered, s.Warn, s.Act, s.MinDelivered)
	rs := strconv.FormatFloat(rate*100, 'f', 3, 64) + "%"
	switch level {
	case RateAct:
		out = append(out, policy.Finding{Name: FindingRateHigh, Action: policy.Defer, Reply: ReplyRateHigh,
			Detail: fmt.Sprintf("complaint rate %s (%d/%d) above %.2f%%", rs, st.Complaints, st.Delivered, s.Act*100), Attrs: attrs("rate", rs)})
	case RateWarn:
		out = append(out, policy.Finding{Name: FindingRateWarn, Action: policy.Accept,
			Detail: fmt.Sprintf("complaint rate %s (%d/%d) above %.2f%%", rs, st.Complaints, st.Delivered, s.Warn*100), Attrs: attrs("rate", rs)})
	}
	return out, nil
}

// oneClick checks RFC 8058 §3.1: a List-Unsubscribe field with an https
// URI, and List-Unsubscribe-Post holding exactly "List-Unsubscribe=One-Click".
// When both are missing and the customer has the gateway add them, it
// marks the message for unsubscribe_link.
func (b *Bulk) oneClick(t *policy.Txn, cb CustomerBulk, attrs func(...string) map[string]string) (policy.Finding, bool) {
	lu := t.HeaderValues("List-Unsubscribe")
	lp := t.HeaderValues("List-Unsubscribe-Post")
	https := false
	for _, v := range lu {
		for _, part := range strings.Split(unfold(v), ",") {
			u := strings.TrimSpace(part)
			if strings.HasPrefix(u, "<") && strings.HasSuffix(u, ">") && strings.HasPrefix(strings.ToLower(u[1:]), "https://") {
				https = true
			}
		}
	}
	post := len(lp) == 1 && unfold(lp[0]) == "List-Unsubscribe=One-Click"
	if https && post {
		return policy.Finding{}, true
	}
	if len(lu) == 0 && len(lp) == 0 && cb.AddUnsubscribe && b.svc.Settings.UnsubscribeBase != "" {
		// The link names one recipient: a message can carry it only when
		// it has exactly one.
		if len(t.Rcpts) == 1 {
			if canon, err := b.svc.Settings.canonicalAddr(t.Rcpts[0].Addr); err == nil {
				unsubOf.Set(t, canon)
				return policy.Finding{}, true
			}
		}
		return policy.Finding{Name: FindingMissingOneClick, Action: policy.Reject,
			Reply:  policy.MustReply(550, "5.7.1", "Bulk mail needs one-click unsubscribe (RFC 8058); send one recipient per message to have it added"),
			Detail: fmt.Sprintf("gateway cannot add a per-recipient unsubscribe link to a message with %d recipients", len(t.Rcpts)), Attrs: attrs()}, false
	}
	var missing []string
	if !https {
		missing = append(missing, "List-Unsubscribe with an https URI")
	}
	if !post {
		missing = append(missing, "List-Unsubscribe-Post: List-Unsubscribe=One-Click")
	}
	text := "Bulk mail needs " + strings.Join(missing, " and ") + " (RFC 8058)"
	return policy.Finding{Name: FindingMissingOneClick, Action: policy.Reject, Reply: policy.MustReply(550, "5.7.1", text),
		Detail: "bulk mail missing " + strings.Join(missing, ", "), Attrs: attrs("missing", strings.Join(missing, "; "))}, false
}

// PrepareFinish implements policy.FinishPreparer: the delivered
// recipients reserved at end of message stay counted for the complaint
// rate when the message was accepted; otherwise (refused, deferred,
// aborted) they and the fingerprint count are given back. The recipients
// a message was accepted for are exactly those it had at end of message.
func (b *Bulk) PrepareFinish(ctx context.Context, t *policy.Txn, accepted bool, bt *policy.Batch) {
	x, ok := bulkOf.Get(t)
	if !ok || x.p == nil || t.DryRun {
		return // a dry run reserved nothing
	}
	bulkOf.Clear(t)
	if accepted {
		return
	}
	if _, err := x.p.call.Result(); err != nil {
		return // nothing was reserved
	}
	sb, own := b.svc.batchOf(bt)
	customer := t.Customer.ID
	b.svc.queueGiveBack(sb, customer, x.p).Then(func(_ any, err error) {
		if err != nil {
			b.svc.Log.Error("giving back delivered recipients failed", "customer", customer, "err", err)
		}
	})
	if own {
		ctx, cancel := b.svc.ctx(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// Stamper is the feedback_stamp check: it adds the signed X-AUP-Customer
// header to every accepted message and the gateway's own Feedback-ID
// "[CAMPAIGN:]CUSTOMER:TAG:SENDERID", so complaints can be traced to the
// customer. Both fields speak for the gateway: whatever a client wrote
// under those names is removed first (before dkim_sign signs the message),
// so no customer can have another one blamed for its mail.
type Stamper struct {
	svc        *Service
	feedbackID bool
}

// FindingFeedbackIDReplaced is reported (action accept) when a client's
// Feedback-ID or X-AUP-Customer field was removed.
const FindingFeedbackIDReplaced = "client_feedback_id_removed"

// NewStamper builds the feedback_stamp check.
func NewStamper(svc *Service) *Stamper {
	return &Stamper{svc: svc, feedbackID: svc.Settings.FeedbackID}
}

// Name implements policy.Check.
func (c *Stamper) Name() string { return StampName }

// stampPrep is a message's stamp reference and, for a multi-recipient
// message, the storing of its recipient set in the end-of-message batch.
type stampPrep struct {
	ref  string
	rcpt string // the one recipient's canonical address; "" for several
	tags []string
	call *store.Call
	// issued is the stamp's time, which unsubscribe_link uses for its
	// link too: a complaint by the link and one by the stamp then name
	// the same minute (Attribute).
	issued time.Time
}

// stampOf is unsubscribe's prepared stamp of the message.
var stampOf = policy.NewState[*stampPrep]()

// prep computes the message's stamp reference and its recipients' tags.
func (c *Stamper) prep(t *policy.Txn) *stampPrep {
	p := &stampPrep{ref: NewStampRef(t.Ref)}
	var canon []string
	seen := map[string]bool{}
	for _, r := range t.Rcpts {
		a, err := c.svc.Settings.canonicalAddr(r.Addr)
		if err != nil || seen[a] {
			continue
		}
		seen[a] = true
		canon = append(canon, a)
	}
	if len(canon) == 1 {
		p.rcpt = canon[0]
		return p
	}
	for _, a := range canon {
		p.tags = append(p.tags, RcptTag(c.svc.Settings.Secret, p.ref, a))
	}
	return p
}

// PrepareEOM implements policy.EOMPreparer: a multi-recipient message's
// recipient set is stored in the end-of-message batch (no round trip of
// its own). A one-recipient message needs none: its stamp binds the
// recipient. A dry run stores nothing.
func (c *Stamper) PrepareEOM(_ context.Context, t *policy.Txn, b *policy.Batch) {
	if t.DryRun || t.Customer == nil {
		return
	}
	p := c.prep(t)
	if len(p.tags) > 0 {
		sb, own := c.svc.batchOf(b)
		if own {
			return // EOM stores it itself
		}
		p.call = c.svc.queueRecipients(sb, t.Customer.ID, p.ref, p.tags)
	}
	stampOf.Set(t, p)
}

// stamp returns the message's X-AUP-Customer value; for a multi-recipient
// message whose set was not queued in a batch (the chain runs without
// batches), it stores it now. A set that cannot be stored is logged: the
// message still goes, and complaints about it will be refused.
func (c *Stamper) stamp(ctx context.Context, t *policy.Txn) string {
	p, _ := stampOf.Get(t)
	if p == nil {
		p = c.prep(t)
		stampOf.Set(t, p)
	}
	now := c.svc.Clock.Now()
	p.issued = now
	if len(p.tags) > 0 && !t.DryRun {
		var err error
		if p.call != nil {
			// Stored with the stage's batch; a failed batch is not tried
			// again (the store is down: no second timeout on the way).
			_, err = p.call.Result()
		} else {
			sctx, cancel := c.svc.ctx(ctx)
			err = c.svc.Backend.PutRecipients(sctx, t.Customer.ID, p.ref, p.tags, c.svc.Settings.RecordTTL, now)
			cancel()
		}
		if err != nil {
			c.svc.Log.Error("feedback stamp: recipient set not stored; complaints about this message will be refused",
				"customer", t.Customer.ID, "ref", t.Ref, "stamp_ref", p.ref, "err", err)
		}
	}
	return Stamp(c.svc.Settings.Secret, t.Customer.ID, p.ref, p.rcpt, now)
}

// EOM implements policy.EOMChecker.
func (c *Stamper) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	campaign := ""
	var removed []string
	if n := t.RemoveHeaders(StampHeader, func(string) bool { return true }); n > 0 {
		removed = append(removed, fmt.Sprintf("%d %s", n, StampHeader))
	}
	var fbs []string
	n := t.RemoveHeaders(FeedbackIDHeader, func(v string) bool {
		// With the gateway's Feedback-ID off, a client's own one stays
		// unless it claims the provider's sender id.
		if !c.feedbackID && !c.claimsSenderID(v) {
			return false
		}
		fbs = append(fbs, v)
		return true
	})
	if n > 0 {
		removed = append(removed, fmt.Sprintf("%d %s", n, FeedbackIDHeader))
		if len(fbs) == 1 {
			campaign = c.campaign(t.Customer.ID, fbs[0])
		}
	}
	if f, ok := c.foreignLink(t); ok {
		// Refused: nothing else is added to a message that is not sent.
		return []policy.Finding{f}, nil
	}
	t.AddHeader(StampHeader, c.stamp(ctx, t))
	if c.feedbackID {
		t.AddHeader(FeedbackIDHeader, FeedbackID(c.svc.Settings.Secret, campaign, t.Customer.ID, c.svc.Settings.SenderID))
	}
	if len(removed) == 0 {
		return nil, nil
	}
	detail := "removed the client's " + strings.Join(removed, " and ") + ": only the gateway writes them"
	if campaign != "" {
		detail += "; campaign " + campaign + " kept as the Feedback-ID's first field"
	}
	return []policy.Finding{{Name: FindingFeedbackIDReplaced, Action: policy.Accept, Detail: detail,
		Attrs: map[string]string{"campaign": campaign}}}, nil
}

// FindingForeignUnsubscribe: the client's List-Unsubscribe carries a link
// of the gateway's own unsubscribe endpoint that the gateway did not issue
// for this customer (another customer's link, or a made-up token).
const FindingForeignUnsubscribe = "foreign_unsubscribe_link"

// ReplyForeignUnsubscribe refuses such a message: RFC 3463 §3.8 X.7.1.
var ReplyForeignUnsubscribe = policy.MustReply(550, "5.7.1", "Message carries an unsubscribe link that is not this sender's")

// foreignLink finds, in the List-Unsubscribe fields the client wrote, a URI
// under the gateway's unsubscribe base whose token does not verify or names
// another customer: a recipient using it would unsubscribe from someone
// else, and a complaint would be attributed to them. Only the gateway
// writes links under its base (RFC 2369 §3.2 lists of <URI>).
func (c *Stamper) foreignLink(t *policy.Txn) (policy.Finding, bool) {
	base := c.svc.Settings.UnsubscribeBase
	if base == "" {
		return policy.Finding{}, false
	}
	for _, v := range t.HeaderValues("List-Unsubscribe") {
		for _, part := range strings.Split(unfold(v), ",") {
			u := strings.Trim(strings.TrimSpace(part), "<>")
			if len(u) < len(base) || !strings.EqualFold(u[:len(base)], base) {
				continue
			}
			tok, err := ParseToken(c.svc.Settings.Secret, u[len(base):], 0, c.svc.Clock.Now())
			if err == nil && tok.Customer == t.Customer.ID {
				continue
			}
			detail := "List-Unsubscribe carries a gateway unsubscribe link the gateway did not issue"
			if err == nil {
				detail = "List-Unsubscribe carries the gateway unsubscribe link of customer " + tok.Customer
			}
			return policy.Finding{Name: FindingForeignUnsubscribe, Action: policy.Reject, Reply: ReplyForeignUnsubscribe, Detail: detail}, true
		}
	}
	return policy.Finding{}, false
}

// claimsSenderID reports whether a Feedback-ID's last field is the
// provider's sender id.
func (c *Stamper) claimsSenderID(v string) bool {
	f := strings.Split(strings.ReplaceAll(unfold(v), " ", ""), ":")
	return strings.EqualFold(f[len(f)-1], c.svc.Settings.SenderID)
}

// campaign returns the first field of a customer's own well-formed
// Feedback-ID ("a:b:c:SenderId", 2 to 4 fields of letters, digits, '.',
// '_' and '-', at most 64 each), which the gateway keeps as the first field
// of its own; "" when the value is malformed, claims the provider's sender
// id, or names another customer or the provider anywhere.
func (c *Stamper) campaign(self, v string) string {
	f := strings.Split(unfold(v), ":")
	if len(f) < 2 || len(f) > 4 || c.claimsSenderID(v) {
		return ""
	}
	for _, x := range f {
		if x == "" || len(x) > 64 || strings.Trim(x, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
			return ""
		}
		if x != self && c.svc.isCustomer(x) {
			return ""
		}
	}
	return f[0]
}

// Unsubscriber is the unsubscribe_link check: for bulk mail that bulk_mail
// marked, it adds List-Unsubscribe with the gateway's signed one-click link
// and List-Unsubscribe-Post (RFC 8058 §3.1), before DKIM signing signs them.
type Unsubscriber struct {
	svc *Service
}

// NewUnsubscriber builds the unsubscribe_link check.
func NewUnsubscriber(svc *Service) *Unsubscriber { return &Unsubscriber{svc: svc} }

// Name implements policy.Check.
func (c *Unsubscriber) Name() string { return UnsubscribeName }

// EOM implements policy.EOMChecker.
func (c *Unsubscriber) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	canon, ok := unsubOf.Get(t)
	if !ok {
		return nil, nil
	}
	issued := c.svc.Clock.Now()
	if p, ok := stampOf.Get(t); ok && !p.issued.IsZero() {
		issued = p.issued // the stamp's instant (see stampPrep)
	}
	tok := NewToken(c.svc.Settings.Secret, t.Customer.ID, canon, issued)
	t.AddHeader("List-Unsubscribe", "<"+c.svc.Settings.UnsubscribeBase+tok+">")
	t.AddHeader("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	return nil, nil
}

// fingerprint hashes a normalised body as it streams: lines are
// lower-cased with white space removed, and MIME boundary lines and part
// header lines (which differ per message for the same content) are left
// out. Bodies with less than minFingerprintBytes of content get none.
type fingerprint struct {
	h    hash.Hash
	line []byte
	skip bool
	long bool
	n    int
}

const (
	maxFPLine           = 1024
	minFingerprintBytes = 64
)

func newFingerprint() *fingerprint {
	return &fingerprint{h: sha256.New(), line: make([]byte, 0, maxFPLine)}
}

func (f *fingerprint) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == '\n' {
			f.endLine()
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		f.line = append(f.line, c)
		if len(f.line) == maxFPLine {
			f.flush()
			f.long = true
		}
	}
	return len(p), nil
}

func (f *fingerprint) flush() {
	if !f.long {
		f.skip = len(f.line) >= 2 && f.line[0] == '-' && f.line[1] == '-' || strings.HasPrefix(string(f.line[:min(len(f.line), 8)]), "content-")
	}
	if !f.skip {
		f.h.Write(f.line)
		f.n += len(f.line)
	}
	f.line = f.line[:0]
}

func (f *fingerprint) endLine() {
	f.flush()
	f.long, f.skip = false, false
}

// sum returns the fingerprint, "" for a body too small to have one.
func (f *fingerprint) sum() string {
	if len(f.line) > 0 {
		f.endLine()
	}
	if f.n < minFingerprintBytes {
		return ""
	}
	return hex.EncodeToString(f.h.Sum(nil)[:16])
}
