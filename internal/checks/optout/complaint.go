package optout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// ComplaintResult is what ingesting one report did.
type ComplaintResult struct {
	Customer string `json:"customer"`
	// CustomerBy says how the customer was found: stamp (the signed
	// X-AUP-Customer header), token (the gateway's List-Unsubscribe link),
	// or feedback_id (the gateway's Feedback-ID, its tag verified).
	CustomerBy   string `json:"customer_by"`
	FeedbackType string `json:"feedback_type"`
	// RcptHashes are the keyed hashes of the recipients put on the list.
	RcptHashes []string `json:"rcpt_hashes"`
	// RcptBy says where the recipients came from: original_rcpt_to, token or to_header.
	RcptBy string `json:"rcpt_by"`
	Added  int    `json:"added"`
	// Counted is set when the complaint counts toward the customer's rate.
	Counted bool `json:"counted"`
}

// ErrUnattributed is returned when a report names no customer of the provider.
var ErrUnattributed = errors.New("complaint cannot be attributed")

// Complaint ingests one ARF report: it finds the customer and the
// recipient(s), puts them on the customer's list (source complaint) and
// counts the complaint. A not-spam report (RFC 6430) is neither.
func (s *Service) Complaint(ctx context.Context, r io.Reader) (ComplaintResult, error) {
	rep, err := ParseReport(r)
	if err != nil {
		return ComplaintResult{}, err
	}
	res, rcpts, err := s.Attribute(rep)
	if err != nil {
		return res, err
	}
	if rep.FeedbackType == "not-spam" {
		return res, nil
	}
	now := s.Clock.Now()
	es := make([]Entry, 0, len(rcpts))
	for _, c := range rcpts {
		e := s.Settings.NewEntry(res.Customer, c, SourceComplaint, "ARF "+rep.FeedbackType+" from "+clipUA(rep.UserAgent), now)
		es = append(es, e)
		res.RcptHashes = append(res.RcptHashes, e.Hash)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if res.Added, err = s.Backend.Add(ctx, es); err != nil {
		return res, err
	}
	s.countOptOut(SourceComplaint, res.Added)
	if s.Counters != nil {
		s.Counters.Complaint()
	}
	if _, err := s.Backend.Count(ctx, res.Customer, KindComplaint, 1, s.Settings.Rate, now); err != nil {
		return res, err
	}
	res.Counted = true
	s.Log.Warn("complaint recorded", "event", "complaint", "customer", res.Customer, "customer_by", res.CustomerBy,
		"feedback_type", rep.FeedbackType, "rcpt_hashes", res.RcptHashes, "added", res.Added, "user_agent", clipUA(rep.UserAgent))
	return res, nil
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

// Attribute finds the customer and canonical recipients of a report.
// Customer, only from what the gateway wrote and can verify, most
// trustworthy first: the signed X-AUP-Customer stamp of the original
// message (topmost valid one: the gateway prepends its own), the gateway's
// own unsubscribe token in List-Unsubscribe, and the gateway's Feedback-ID
// (its keyed tag verified, ParseFeedbackID). Recipients:
// Original-Rcpt-To (RFC 5965 §3.2), else the token's recipient, else the
// original To header when it names exactly one address.
func (s *Service) Attribute(rep *Report) (ComplaintResult, []string, error) {
	res := ComplaintResult{FeedbackType: rep.FeedbackType}
	var tok *Token
	if rep.Original != nil {
		for _, v := range rep.Original.Values(StampHeader) {
			if c, err := ParseStamp(s.Settings.Secret, v); err == nil {
				res.Customer, res.CustomerBy = c, "stamp"
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
	var rcpts []string
	for _, a := range rep.OriginalRcptTo {
		if c, err := s.Settings.Canonical(a); err == nil {
			rcpts = append(rcpts, c)
			res.RcptBy = "original_rcpt_to"
		}
	}
	if len(rcpts) == 0 && tok != nil && tok.Customer == res.Customer {
		if c, err := s.Settings.Canonical(tok.Recipient); err == nil {
			rcpts, res.RcptBy = []string{c}, "token"
		}
	}
	if len(rcpts) == 0 && rep.Original != nil {
		if list, err := mail.ParseAddressList(rep.Original.Get("To")); err == nil && len(list) == 1 {
			if c, err := s.Settings.Canonical(list[0].Address); err == nil {
				rcpts, res.RcptBy = []string{c}, "to_header"
			}
		}
	}
	if len(rcpts) == 0 {
		return res, nil, fmt.Errorf("%w: no recipient: no usable Original-Rcpt-To, gateway unsubscribe link or single To address (redacted report?)", ErrMalformedReport)
	}
	return res, rcpts, nil
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
