package optout

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// ComplaintResult is what ingesting one report did.
type ComplaintResult struct {
	Customer string `json:"customer"`
	// CustomerBy says how the customer was found: stamp (the signed
	// X-AUP-Customer header), token (the gateway's List-Unsubscribe link),
	// or feedback_id (the gateway's Feedback-ID, its tag verified).
	CustomerBy   string `json:"customer_by"`
	FeedbackType string `json:"feedback_type"`
	// RcptHashes are the keyed hashes of the recipients put on the list:
	// at most one, the complainant.
	RcptHashes []string `json:"rcpt_hashes"`
	// RcptBy says where the recipient came from: original_rcpt_to, token or to_header.
	RcptBy string `json:"rcpt_by"`
	// BoundBy says what proved the recipient was one the message went to:
	// stamp (the stamp names it), recipient_set (the message's stored set)
	// or token (the unsubscribe link names it).
	BoundBy string `json:"bound_by,omitempty"`
	Added   int    `json:"added"`
	// Counted is set when the complaint counts toward the customer's rate.
	Counted bool `json:"counted"`
	// Duplicate is set when this message and recipient were counted before
	// (nothing changed).
	Duplicate bool `json:"duplicate,omitempty"`
	// Reporter is whom the per-reporter cap counted the report against.
	Reporter string `json:"reporter"`
	// Refused says why a report was refused (with ErrRefused).
	Refused string `json:"refused,omitempty"`
}

// ErrUnattributed is returned when a report names no customer of the provider.
var ErrUnattributed = errors.New("complaint cannot be attributed")

// ErrRefused is returned for a report the gateway will not count: its
// recipient is not one the stamp was issued for, it names several
// recipients, it is bound to no message (a Feedback-ID alone, a stamp
// written before recipients were bound), its stamp is older than
// optout.complaints.record_ttl, or its reporter is over its hourly cap.
// Nothing is recorded.
var ErrRefused = errors.New("complaint refused")

// ErrReporterCapped wraps ErrRefused for a reporter over
// optout.complaints.reporter_cap reports this hour.
var ErrReporterCapped = fmt.Errorf("%w: reporter over its hourly cap", ErrRefused)

// Refusal reasons (ComplaintResult.Refused, the refused-complaints metric).
const (
	RefusedCapped       = "reporter_cap"
	RefusedNotRecipient = "not_recipient"
	RefusedSeveral      = "several_recipients"
	RefusedUnbound      = "unbound"
	RefusedExpired      = "expired"
)

// refuse returns ErrRefused with reason and detail, filling res.Refused.
func refuse(res *ComplaintResult, reason, format string, args ...any) error {
	res.Refused = reason
	return fmt.Errorf("%w (%s): %s", ErrRefused, reason, fmt.Sprintf(format, args...))
}

// Binding is what ties a complaint to one recipient of one stamped
// message.
type Binding struct {
	// Recipient is the complainant's canonical address.
	Recipient string
	// Ref and Tag name the complaint once: the message's stamp reference
	// (for a token, its customer and issue minute) and the recipient's tag
	// under it.
	Ref, Tag string
	// InStore says the recipient must be found in the message's stored
	// recipient set (a multi-recipient message).
	InStore bool
	// LinkRef is, for a one-recipient message's stamp, the reference its
	// unsubscribe link would be counted under ("u" and the stamp's
	// minute): the complaint is recorded under both, so a report of the
	// message by its stamp and another by its link count once.
	LinkRef string
	// Issued is when the stamp or token was issued.
	Issued time.Time
}

// Complaint ingests one ARF report with no caller-declared reporter (the
// per-reporter cap counts it against the report's From domain).
func (s *Service) Complaint(ctx context.Context, r io.Reader) (ComplaintResult, error) {
	return s.ComplaintFrom(ctx, "", r)
}

// ComplaintFrom ingests one ARF report received from reporter (the
// caller's name for the feedback loop or mailbox it came from; "" for the
// report's From domain). It counts the report against the reporter's
// hourly cap, finds the customer and the one complaining recipient, checks
// that the recipient is one the message was stamped for (Attribute),
// and records the complaint once per message and recipient: the
// complainant goes on the customer's list (source complaint) and the
// complaint is counted. A not-spam report (RFC 6430) is neither. A report
// refused by these rules returns ErrRefused and records nothing.
func (s *Service) ComplaintFrom(ctx context.Context, reporter string, r io.Reader) (ComplaintResult, error) {
	rep, err := ParseReport(r)
	if err != nil {
		return ComplaintResult{}, err
	}
	res := ComplaintResult{FeedbackType: rep.FeedbackType, Reporter: reporterName(reporter, rep)}
	now := s.Clock.Now()
	sctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.Backend.Reported(sctx, res.Reporter, now)
	if err != nil {
		return res, err
	}
	if limit := s.Settings.ReporterCap; limit > 0 && n > limit {
		if n == limit+1 {
			// Once per episode: the first report over the cap this hour.
			s.Log.Warn("complaint reporter over its hourly cap; its reports are refused until the hour ends",
				"event", "complaint_reporter_capped", "reporter", res.Reporter, "cap", limit)
		}
		s.refused(RefusedCapped)
		res.Refused = RefusedCapped
		return res, fmt.Errorf("%w: %d reports this hour, cap %d (optout.complaints.reporter_cap)", ErrReporterCapped, n, limit)
	}
	a, b, err := s.Attribute(rep)
	a.Reporter, a.FeedbackType = res.Reporter, res.FeedbackType
	res = a
	if err != nil {
		if errors.Is(err, ErrRefused) {
			s.refusedLog(res, err)
		}
		return res, err
	}
	if rep.FeedbackType == "not-spam" {
		return res, nil
	}
	if now.Sub(b.Issued) > s.Settings.RecordTTL {
		err := refuse(&res, RefusedExpired, "the message was stamped %s ago, more than optout.complaints.record_ttl (%s)",
			now.Sub(b.Issued).Round(time.Minute), s.Settings.RecordTTL)
		s.refusedLog(res, err)
		return res, err
	}
	e := s.Settings.NewEntry(res.Customer, b.Recipient, SourceComplaint, "ARF "+rep.FeedbackType+" from "+clipUA(rep.UserAgent), now)
	res.RcptHashes = []string{e.Hash}
	out, err := s.Backend.Complain(sctx, ComplaintOp{Customer: res.Customer, Ref: b.Ref, Tag: b.Tag, InStore: b.InStore,
		Dedupe: s.dedupeKeys(b), Entry: e, TTL: s.Settings.RecordTTL, Rate: s.Settings.Rate, Now: now})
	if err != nil {
		return res, err
	}
	switch out.Status {
	case ComplaintNotRecipient:
		res.RcptHashes = nil
		err := refuse(&res, RefusedNotRecipient, "the recipient is not one of the message's recipients (or its recipient set expired)")
		s.refusedLog(res, err)
		return res, err
	case ComplaintDuplicate:
		res.Duplicate = true
		s.Log.Info("complaint already counted for this message and recipient", "event", "complaint_duplicate",
			"customer", res.Customer, "stamp_ref", b.Ref, "rcpt_hash", e.Hash, "reporter", res.Reporter)
		return res, nil
	}
	res.Added, res.Counted = out.Added, true
	s.countOptOut(SourceComplaint, res.Added)
	if s.Counters != nil {
		s.Counters.Complaint()
	}
	s.Log.Warn("complaint recorded", "event", "complaint", "customer", res.Customer, "customer_by", res.CustomerBy,
		"bound_by", res.BoundBy, "stamp_ref", b.Ref, "feedback_type", rep.FeedbackType, "rcpt_hashes", res.RcptHashes,
		"added", res.Added, "reporter", res.Reporter, "user_agent", clipUA(rep.UserAgent))
	return res, nil
}

// refused counts a refused report (metrics).
func (s *Service) refused(reason string) {
	if c, ok := s.Counters.(RefusalCounter); ok {
		c.ComplaintRefused(reason)
	}
}

// refusedLog counts and logs a refused report (one line per report; the
// reporter cap bounds how many a flood makes).
func (s *Service) refusedLog(res ComplaintResult, err error) {
	s.refused(res.Refused)
	s.Log.Info("complaint refused", "event", "complaint_refused", "reason", res.Refused, "customer", res.Customer,
		"customer_by", res.CustomerBy, "reporter", res.Reporter, "err", err)
}

// reporterName is whom a report counts against for the cap: the caller's
// name for it, else "from:" and the report's From domain, else "unknown";
// cleaned of control characters and clipped (it is logged).
func reporterName(caller string, rep *Report) string {
	r := strings.TrimSpace(caller)
	if r == "" && rep.FromDomain != "" {
		r = "from:" + rep.FromDomain
	}
	r = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return -1
		}
		return c
	}, r)
	if r == "" {
		return "unknown"
	}
	if len(r) > 100 {
		r = r[:100]
	}
	return r
}

func clipUA(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "unknown reporter"
	}
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

// Attribute finds the customer of a report, its one complaining recipient,
// and what binds that recipient to a message the gateway stamped.
//
// Customer, only from what the gateway wrote and can verify, most
// trustworthy first: the signed X-AUP-Customer stamp of the original
// message (topmost valid one: the gateway prepends its own), the gateway's
// own unsubscribe token in List-Unsubscribe, and the gateway's Feedback-ID
// (its keyed tag verified, ParseFeedbackID). No customer: ErrUnattributed.
//
// Recipient: the report's Original-Rcpt-To (RFC 5965 §3.3 lets it appear
// several times; a complaint is one recipient's, so a report naming more
// than one distinct address is refused whole), else the token's recipient,
// else the original To header when it names exactly one address.
//
// Binding: a stamp that names its one recipient must name this one; a
// stamp of a multi-recipient message sends the recipient to the stored
// set (Binding.InStore, checked when the complaint is recorded); an
// unsubscribe token (when there is no current stamp) must be this
// recipient's. A Feedback-ID alone, or a stamp written before recipients
// were bound, binds no recipient: refused (ErrRefused).
func (s *Service) Attribute(rep *Report) (ComplaintResult, *Binding, error) {
	res := ComplaintResult{FeedbackType: rep.FeedbackType}
	var tok *Token
	var st *StampInfo
	if rep.Original != nil {
		for _, v := range rep.Original.Values(StampHeader) {
			if si, err := VerifyStamp(s.Settings.Secret, v); err == nil {
				st = &si
				res.Customer, res.CustomerBy = si.Customer, "stamp"
				break
			}
		}
		for _, v := range rep.Original.Values("List-Unsubscribe") {
			if t := s.tokenInHeader(v); t != nil {
				tok = t
				break
			}
		}
		if res.Customer == "" && tok != nil {
			res.Customer, res.CustomerBy = tok.Customer, "token"
		}
		if res.Customer == "" {
			for _, v := range rep.Original.Values("Feedback-ID") {
				if c := s.feedbackCustomer(v); c != "" {
					res.Customer, res.CustomerBy = c, "feedback_id"
					break
				}
			}
		}
	}
	// Nothing a customer writes names a customer: not a Feedback-ID without
	// the gateway's tag, not the envelope or From domain (a customer in
	// monitor mode, or one whose check is off, could use another's).
	if res.Customer == "" {
		return res, nil, fmt.Errorf("%w: no valid %s stamp, gateway unsubscribe link or gateway Feedback-ID", ErrUnattributed, StampHeader)
	}
	if tok != nil && tok.Customer != res.Customer {
		tok = nil // another customer's link in a stamped message binds nothing
	}
	// The complainant: one recipient, or none.
	var rcpt string
	distinct := map[string]bool{}
	for _, a := range rep.OriginalRcptTo {
		c, err := s.Settings.Canonical(a)
		if err != nil {
			c = "\x00" + a // unreadable, but still a recipient named
		}
		distinct[c] = true
		rcpt, res.RcptBy = c, "original_rcpt_to"
	}
	if len(distinct) > 1 {
		res.RcptBy = ""
		return res, nil, refuse(&res, RefusedSeveral, "the report names %d recipients in Original-Rcpt-To; a complaint counts for the one recipient who complained, so none is taken", len(distinct))
	}
	if strings.HasPrefix(rcpt, "\x00") {
		return res, nil, fmt.Errorf("%w: Original-Rcpt-To %q is not an address", ErrMalformedReport, clipUA(rcpt[1:]))
	}
	if rcpt == "" && tok != nil {
		if c, err := s.Settings.Canonical(tok.Recipient); err == nil {
			rcpt, res.RcptBy = c, "token"
		}
	}
	if rcpt == "" && rep.Original != nil {
		if list, err := mail.ParseAddressList(rep.Original.Get("To")); err == nil && len(list) == 1 {
			if c, err := s.Settings.Canonical(list[0].Address); err == nil {
				rcpt, res.RcptBy = c, "to_header"
			}
		}
	}
	if rcpt == "" {
		return res, nil, fmt.Errorf("%w: no recipient: no usable Original-Rcpt-To, gateway unsubscribe link or single To address (redacted report?)", ErrMalformedReport)
	}
	b := &Binding{Recipient: rcpt}
	switch {
	case st != nil && st.Ref != "":
		b.Ref, b.Issued = st.Ref, st.Issued
		b.Tag = RcptTag(s.Settings.Secret, st.Ref, rcpt)
		if st.RcptTag == "" {
			b.InStore, res.BoundBy = true, "recipient_set"
			return res, b, nil
		}
		if !hmac.Equal([]byte(b.Tag), []byte(st.RcptTag)) {
			return res, nil, refuse(&res, RefusedNotRecipient, "the stamp was issued for another recipient of the message")
		}
		b.LinkRef = linkRef(st.Issued)
		res.BoundBy = "stamp"
		return res, b, nil
	case tok != nil:
		tc, err := s.Settings.Canonical(tok.Recipient)
		if err != nil || tc != rcpt {
			return res, nil, refuse(&res, RefusedNotRecipient, "the unsubscribe link was issued for another recipient")
		}
		// A link names no message: the complaint is once per link (its
		// customer, recipient and issue minute).
		b.Ref = linkRef(tok.Issued)
		b.Tag, b.Issued, res.BoundBy = RcptTag(s.Settings.Secret, b.Ref, rcpt), tok.Issued, "token"
		return res, b, nil
	case st != nil:
		return res, nil, refuse(&res, RefusedUnbound, "the %s stamp predates recipient binding (no m=): it names no message or recipient", StampHeader)
	}
	return res, nil, refuse(&res, RefusedUnbound, "a Feedback-ID names the customer only, not the message or the recipient")
}

// linkRef is the reference a complaint by an unsubscribe link issued at
// t is counted under: the link names its customer, recipient and minute,
// not its message.
func linkRef(t time.Time) string { return "u" + strconv.FormatInt(t.Unix()/60, 10) }

// dedupeKeys are the (reference, tag) names a complaint is recorded under.
func (s *Service) dedupeKeys(b *Binding) []string {
	keys := []string{b.Ref + ":" + b.Tag}
	if b.LinkRef != "" {
		keys = append(keys, b.LinkRef+":"+RcptTag(s.Settings.Secret, b.LinkRef, b.Recipient))
	}
	return keys
}

// tokenInHeader finds a valid token of the gateway's own endpoint in a
// List-Unsubscribe value (RFC 2369 §3.2: a list of <URI>).
func (s *Service) tokenInHeader(v string) *Token {
	base := s.Settings.UnsubscribeBase
	for _, part := range strings.Split(unfold(v), ",") {
		u := strings.Trim(strings.TrimSpace(part), "<>")
		i := strings.Index(u, "/u/")
		if i < 0 || (base != "" && !strings.HasPrefix(u, base)) {
			continue
		}
		// Expired links still identify the message: no TTL here.
		if t, err := ParseToken(s.Settings.Secret, u[i+3:], 0, s.Clock.Now()); err == nil {
			return &t
		}
	}
	return nil
}

// feedbackCustomer returns the customer of a Feedback-ID only when the
// gateway wrote it: the provider's sender id last, and the keyed tag of the
// customer before it (ParseFeedbackID). A Feedback-ID a client wrote names
// no one, whatever customer it claims.
func (s *Service) feedbackCustomer(v string) string {
	c, ok := ParseFeedbackID(s.Settings.Secret, v, s.Settings.SenderID)
	if !ok || (s.Config != nil && !s.isCustomer(c)) {
		return ""
	}
	return c
}

// isCustomer reports whether id is a configured customer.
func (s *Service) isCustomer(id string) bool {
	if s.Known != nil {
		return s.Known(id)
	}
	if s.Config == nil {
		return false
	}
	for _, cu := range s.Config.Customers {
		if cu.ID == id {
			return true
		}
	}
	return false
}
