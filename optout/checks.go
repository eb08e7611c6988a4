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

	"github.com/aupguard/aupguard/policy"
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

type lookupKey struct{}

// PrepareRcpt implements policy.RcptPreparer: the lookup (and the
// escalation count of a listed recipient) goes into the stage's batch.
func (c *Suppression) PrepareRcpt(ctx context.Context, t *policy.Txn, r *policy.Rcpt, b policy.Batch) {
	pend, _ := t.Value(lookupKey{}).(map[*policy.Rcpt]*pendingLookup)
	if pend == nil {
		pend = map[*policy.Rcpt]*pendingLookup{}
		t.SetValue(lookupKey{}, pend)
	}
	canon, err := c.svc.S.canonicalAddr(r.Addr)
	if err != nil {
		pend[r] = nil // not an address that can be on a list
		return
	}
	h := c.svc.S.Hash(canon)
	sb, own := c.svc.batchOf(b)
	pend[r] = &pendingLookup{hash: h, l: c.svc.queueLookup(sb, t.Customer.ID, h)}
	if own {
		ctx, cancel := c.svc.ctx(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// pendingLookup is one recipient's lookup in the stage's batch.
type pendingLookup struct {
	hash string
	l    *lookup
}

// Rcpt implements policy.RcptChecker.
func (c *Suppression) Rcpt(ctx context.Context, t *policy.Txn, r *policy.Rcpt) ([]policy.Finding, error) {
	pend, _ := t.Value(lookupKey{}).(map[*policy.Rcpt]*pendingLookup)
	if _, ok := pend[r]; !ok {
		c.PrepareRcpt(ctx, t, r, nil)
		pend, _ = t.Value(lookupKey{}).(map[*policy.Rcpt]*pendingLookup)
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
	s := c.svc.S
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
	Aligned  func(t *policy.Txn) (aligned, known bool)
	Default  CustomerBulk
	Customer map[string]CustomerBulk
}

type fpKey struct{}
type unsubKey struct{}

// NewBulk builds the bulk_mail check from the service's config.
func NewBulk(svc *Service, aligned func(*policy.Txn) (bool, bool)) *Bulk {
	cfg := svc.Cfg
	b := &Bulk{svc: svc, Aligned: aligned, Customer: map[string]CustomerBulk{}}
	b.Default = CustomerBulk{AddUnsubscribe: cfg.Bulk.Unsubscribe == "add", FingerprintRecipients: cfg.Bulk.FingerprintRecipients}
	for i := range cfg.Customers {
		cu := &cfg.Customers[i]
		cb := b.Default
		cb.AddUnsubscribe = cfg.UnsubscribeMode(cu) == "add"
		if cu.FingerprintRecipients != nil {
			cb.FingerprintRecipients = *cu.FingerprintRecipients
		}
		b.Customer[cu.ID] = cb
	}
	return b
}

// Name implements policy.Check.
func (b *Bulk) Name() string { return BulkName }

func (b *Bulk) settings(id string) CustomerBulk {
	if cb, ok := b.Customer[id]; ok {
		return cb
	}
	return b.Default
}

// Body implements policy.BodyChecker: the body's fingerprint is computed as
// it streams.
func (b *Bulk) Body(t *policy.Txn) io.Writer {
	if b.settings(t.Customer.ID).FingerprintRecipients < 0 {
		return nil
	}
	w := newFingerprint()
	t.SetValue(fpKey{}, w)
	return w
}

type bulkKey struct{}

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
	if w, ok := t.Value(fpKey{}).(*fingerprint); ok && cb.FingerprintRecipients >= 0 {
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
func (b *Bulk) PrepareEOM(ctx context.Context, t *policy.Txn, bt policy.Batch) {
	cb := b.settings(t.Customer.ID)
	by, fp := b.signals(t, cb)
	x := &bulkTxn{by: by, fp: fp}
	t.SetValue(bulkKey{}, x)
	if len(t.Rcpts) == 0 && by == "" && fp == "" {
		return
	}
	sb, own := b.svc.batchOf(bt)
	x.p = b.svc.queueEOM(sb, t.Customer.ID, fp, int64(len(t.Rcpts)), by != "", cb.FingerprintRecipients)
	if own {
		ctx, cancel := b.svc.ctx(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// EOM implements policy.EOMChecker.
func (b *Bulk) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	cb := b.settings(t.Customer.ID)
	x, ok := t.Value(bulkKey{}).(*bulkTxn)
	if !ok {
		b.PrepareEOM(ctx, t, nil)
		x, _ = t.Value(bulkKey{}).(*bulkTxn)
	}
	by, fp := x.by, x.fp
	if by == "" && fp == "" {
		return nil, nil
	}
	s := b.svc.S
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
	if len(lu) == 0 && len(lp) == 0 && cb.AddUnsubscribe && b.svc.S.UnsubscribeBase != "" {
		// The link names one recipient: a message can carry it only when
		// it has exactly one.
		if len(t.Rcpts) == 1 {
			if canon, err := b.svc.S.canonicalAddr(t.Rcpts[0].Addr); err == nil {
				t.SetValue(unsubKey{}, canon)
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
func (b *Bulk) PrepareFinish(ctx context.Context, t *policy.Txn, accepted bool, bt policy.Batch) {
	x, ok := t.Value(bulkKey{}).(*bulkTxn)
	if !ok || x.p == nil {
		return
	}
	t.SetValue(bulkKey{}, nil)
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
// header to every accepted message, and Feedback-ID "CUSTOMER:SENDERID"
// when the message has none, so complaints can be traced to the customer.
type Stamper struct {
	svc        *Service
	feedbackID bool
}

// NewStamper builds the feedback_stamp check.
func NewStamper(svc *Service) *Stamper {
	fb := svc.Cfg.OptOut.Feedback.FeedbackID
	return &Stamper{svc: svc, feedbackID: fb == nil || *fb}
}

// Name implements policy.Check.
func (c *Stamper) Name() string { return StampName }

// EOM implements policy.EOMChecker.
func (c *Stamper) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	t.AddHeader(StampHeader, Stamp(c.svc.S.Secret, t.Customer.ID, c.svc.Clock.Now()))
	if c.feedbackID && len(t.HeaderValues("Feedback-ID")) == 0 {
		t.AddHeader("Feedback-ID", t.Customer.ID+":"+c.svc.S.SenderID)
	}
	return nil, nil
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
	canon, ok := t.Value(unsubKey{}).(string)
	if !ok {
		return nil, nil
	}
	tok := NewToken(c.svc.S.Secret, t.Customer.ID, canon, c.svc.Clock.Now())
	t.AddHeader("List-Unsubscribe", "<"+c.svc.S.UnsubscribeBase+tok+">")
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
