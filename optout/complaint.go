package optout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/aupguard/aupguard/mailaddr"
)

// ComplaintResult is what ingesting one report did.
type ComplaintResult struct {
	Customer string `json:"customer"`
	// CustomerBy says how the customer was found: stamp (the signed
	// X-AUP-Customer header), token (the gateway's List-Unsubscribe link),
	// feedback_id, or sender_domain.
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
		e := s.S.NewEntry(res.Customer, c, SourceComplaint, "ARF "+rep.FeedbackType+" from "+clipUA(rep.UserAgent), now)
		es = append(es, e)
		res.RcptHashes = append(res.RcptHashes, e.Hash)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if res.Added, err = s.B.Add(ctx, es); err != nil {
		return res, err
	}
	s.countOptOut(SourceComplaint, res.Added)
	if s.Counters != nil {
		s.Counters.Complaint()
	}
	if _, err := s.B.Count(ctx, res.Customer, KindComplaint, 1, s.S.Rate, now); err != nil {
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
// Customer, most trustworthy first: the signed X-AUP-Customer stamp of the
// original message (topmost valid one: the gateway prepends its own), the
// gateway's own unsubscribe token in List-Unsubscribe, a Feedback-ID
// "CUSTOMER:SENDERID" with the provider's sender id, and last the one
// customer owning the Original-Mail-From domain. Recipients:
// Original-Rcpt-To (RFC 5965 §3.2), else the token's recipient, else the
// original To header when it names exactly one address.
func (s *Service) Attribute(rep *Report) (ComplaintResult, []string, error) {
	res := ComplaintResult{FeedbackType: rep.FeedbackType}
	var tok *Token
	if rep.Original != nil {
		for _, v := range rep.Original.Values(StampHeader) {
			if c, err := ParseStamp(s.S.Secret, v); err == nil {
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
	if res.Customer == "" && rep.OriginalMailFrom != "" {
		if c := s.domainCustomer(rep.OriginalMailFrom); c != "" {
			res.Customer, res.CustomerBy = c, "sender_domain"
		}
	}
	if res.Customer == "" {
		return res, nil, fmt.Errorf("%w: no valid %s stamp, gateway unsubscribe link, Feedback-ID or sender domain of a known customer", ErrUnattributed, StampHeader)
	}
	var rcpts []string
	for _, a := range rep.OriginalRcptTo {
		if c, err := s.S.Canonical(a); err == nil {
			rcpts = append(rcpts, c)
			res.RcptBy = "original_rcpt_to"
		}
	}
	if len(rcpts) == 0 && tok != nil && tok.Customer == res.Customer {
		if c, err := s.S.Canonical(tok.Recipient); err == nil {
			rcpts, res.RcptBy = []string{c}, "token"
		}
	}
	if len(rcpts) == 0 && rep.Original != nil {
		if list, err := mail.ParseAddressList(rep.Original.Get("To")); err == nil && len(list) == 1 {
			if c, err := s.S.Canonical(list[0].Address); err == nil {
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
	base := s.S.UnsubscribeBase
	for _, part := range strings.Split(unfold(v), ",") {
		u := strings.Trim(strings.TrimSpace(part), "<>")
		i := strings.Index(u, "/u/")
		if i < 0 || (base != "" && !strings.HasPrefix(u, base)) {
			continue
		}
		// Expired links still identify the message: no TTL here.
		if t, err := ParseToken(s.S.Secret, u[i+3:], 0, s.Clock.Now()); err == nil {
			return &t
		}
	}
	return nil
}

// feedbackCustomer reads "CUSTOMER:SENDERID" (the gateway's stamp; Google's
// Feedback-ID puts the sender id last) when the customer is known.
func (s *Service) feedbackCustomer(v string) string {
	fields := strings.Split(unfold(v), ":")
	if len(fields) < 2 || fields[len(fields)-1] != s.S.SenderID {
		return ""
	}
	c := fields[len(fields)-2]
	if s.Cfg != nil {
		for _, cu := range s.Cfg.Customers {
			if cu.ID == c {
				return c
			}
		}
		return ""
	}
	return c
}

// domainCustomer returns the only customer owning addr's domain.
func (s *Service) domainCustomer(addr string) string {
	if s.Cfg == nil {
		return ""
	}
	a, err := mailaddr.Parse(addr)
	if err != nil || a.Domain == "" {
		return ""
	}
	found := ""
	for _, cu := range s.Cfg.Customers {
		for _, d := range cu.Domains {
			p, err := mailaddr.ParsePattern(d)
			if err == nil && p.Match(a.Domain) {
				if found != "" && found != cu.ID {
					return "" // ambiguous
				}
				found = cu.ID
			}
		}
	}
	return found
}
