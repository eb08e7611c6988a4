package headers

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// ForgeryName is the name of the header forgery check.
const ForgeryName = "header_forgery"

// Findings of header_forgery. Duplicated singleton fields each have their
// own finding, "duplicate_" + the field name in snake case (see Singletons).
const (
	FindingDateMissing      = "date_missing"
	FindingFromMissing      = "from_missing"
	FindingReceivedForged   = "received_forged"
	FindingAuthResForged    = "auth_results_forged"
	FindingARCAuthResForged = "arc_auth_results_forged"
	FindingReturnPath       = "return_path_present"
	FindingOriginForeign    = "origin_header_foreign"
	FindingOriginProvider   = "origin_header_provider"
	FindingOriginInvalid    = "origin_header_invalid"
)

// Singletons are the fields RFC 5322 §3.6 allows at most once (the table
// in §3.6, "Max number" 1), with their duplicate finding names.
var Singletons = []struct{ Field, Finding string }{
	{"Date", "duplicate_date"},
	{"From", "duplicate_from"},
	{"Sender", "duplicate_sender"},
	{"Reply-To", "duplicate_reply_to"},
	{"To", "duplicate_to"},
	{"Cc", "duplicate_cc"},
	{"Bcc", "duplicate_bcc"},
	{"Message-ID", "duplicate_message_id"},
	{"In-Reply-To", "duplicate_in_reply_to"},
	{"References", "duplicate_references"},
	{"Subject", "duplicate_subject"},
}

// Forgery is the header_forgery check: fields that misstate a message's
// origin or route or that are ambiguous (AUP: "forged or misleading ...
// email headers ... that describe its origin or route", "alter or
// obfuscate any email header").
type Forgery struct {
	s *Settings
}

// NewForgery builds the header_forgery check.
func NewForgery(s *Settings) *Forgery { return &Forgery{s: s} }

// Name implements policy.Check.
func (c *Forgery) Name() string { return ForgeryName }

func forgeryFinding(name, detail string, attrs map[string]string) policy.Finding {
	return policy.Finding{Name: name, Detail: detail, Action: policy.Reject, Reply: ReplyForged, Attrs: attrs}
}

// EOM implements policy.EOMChecker.
func (c *Forgery) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	var col collector
	// How often each singleton field occurs (Date and From among them);
	// counted on the stack, no map per message.
	var countBuf [16]int
	counts := countBuf[:0]
	if len(Singletons) > len(countBuf) {
		counts = make([]int, 0, len(Singletons))
	}
	counts = counts[:len(Singletons)]
	date, from := 0, 0
	for _, h := range t.Headers {
		name := strings.TrimRight(h.Name, " \t")
		for i, s := range Singletons {
			if lowerIs(name, s.Field) {
				counts[i]++
			}
		}
		if lowerIs(name, "Date") {
			date++
		}
		if lowerIs(name, "From") {
			from++
		}
	}
	// RFC 5322 §3.6: the origination date and the originator fields are
	// the only required ones.
	if date == 0 {
		col.add(forgeryFinding(FindingDateMissing, "no Date field", nil))
	}
	if from == 0 {
		col.add(forgeryFinding(FindingFromMissing, "no From field", nil))
	}
	// RFC 5322 §3.6: these fields occur at most once. A second copy is how
	// one reader is shown another sender or subject than the next one.
	for i, s := range Singletons {
		if n := counts[i]; n > 1 {
			col.add(forgeryFinding(s.Finding,
				fmt.Sprintf("%d %s fields, RFC 5322 §3.6 allows one", n, s.Field),
				map[string]string{"header": s.Field, "count": strconv.Itoa(n)}))
		}
	}
	client := c.clientFields(t)
	c.received(&col, t, client)
	for i, h := range t.Headers {
		if !client[i] {
			continue
		}
		name := strings.TrimRight(h.Name, " \t")
		switch {
		case strings.EqualFold(name, "Authentication-Results"):
			// RFC 8601 §5: an MTA MUST delete (here: refuse) a field that
			// claims by its authserv-id to come from within its trust
			// boundary but did not come from a trusted MTA.
			if id := AuthServID(h.Value, false); c.s.Provider.OwnsAuthservID(id) {
				col.add(forgeryFinding(FindingAuthResForged,
					fmt.Sprintf("client-supplied Authentication-Results with the provider's authserv-id %q", clip(id)),
					map[string]string{"authserv_id": clip(id)}))
			}
		case strings.EqualFold(name, "ARC-Authentication-Results"):
			// RFC 8617 §4.1.1 and §5.2: the AAR carries the sealer's own
			// authserv-id; the provider has not sealed this message yet.
			if id := AuthServID(h.Value, true); c.s.Provider.OwnsAuthservID(id) {
				col.add(forgeryFinding(FindingARCAuthResForged,
					fmt.Sprintf("client-supplied ARC-Authentication-Results with the provider's authserv-id %q", clip(id)),
					map[string]string{"authserv_id": clip(id)}))
			}
		case strings.EqualFold(name, "Return-Path"):
			// RFC 5321 §4.4: Return-path is added at final delivery; "a
			// message-originating SMTP system SHOULD NOT send a message
			// that already contains a Return-path header field".
			col.add(forgeryFinding(FindingReturnPath,
				fmt.Sprintf("client-supplied Return-Path %q", clip(unfold(h.Value))), nil))
		}
	}
	c.origin(&col, t)
	return col.findings(), nil
}

// clientFields marks the fields the client wrote, as opposed to those the
// provider's MTAs added before the milter saw the message.
//
// Postfix does not pass the Received: it prepends for the current hop to
// milters (the end-to-end test shows it: with no field exempt, a message
// relayed by "mta1.provider.test" is not reported), so at submission the
// milter sees the client's header section only, and no genuine provider
// Received: can be in it: the message has not been through the provider
// yet. With an MTA that does pass its own (Sendmail), or with the milter on
// a relay behind one provider hop, headers.trusted_received says how many
// topmost Received: fields are the provider's; they and anything above
// them (which the client cannot place there) are not examined.
func (c *Forgery) clientFields(t *policy.Txn) []bool {
	client := make([]bool, len(t.Headers))
	for i := range client {
		client[i] = true
	}
	if c.localTrusted(t) {
		client[0] = false
	}
	n := 0
	for i, h := range t.Headers {
		if n >= c.s.TrustedReceived {
			break
		}
		if strings.EqualFold(strings.TrimRight(h.Name, " \t"), "Received") {
			n++
			for j := 0; j <= i; j++ {
				client[j] = false
			}
		}
	}
	return client
}

// received reports client Received: fields that claim to have been added
// by the provider's MTAs (RFC 5321 §4.4: each hop adds its own trace
// field; the "by" clause names the host that added it).
func (c *Forgery) received(col *collector, t *policy.Txn, client []bool) {
	seen := 0
	for i, h := range t.Headers {
		if !client[i] || !strings.EqualFold(strings.TrimRight(h.Name, " \t"), "Received") {
			continue
		}
		seen++
		if c.s.ReceivedDepth > 0 && seen > c.s.ReceivedDepth {
			return
		}
		r := ParseReceived(h.Value)
		claim := ""
		if r.By != "" && c.s.Provider.OwnsHost(r.By) {
			claim = r.By
		}
		for _, a := range r.ByAddrs {
			if claim == "" && c.s.Provider.OwnsAddr(a) {
				claim = a.String()
			}
		}
		if claim != "" {
			col.add(forgeryFinding(FindingReceivedForged,
				fmt.Sprintf("client-supplied Received claims to be by the provider's %s", clip(claim)),
				map[string]string{"by": clip(claim)}))
		}
	}
}

// origin checks the configured origin headers (X-Originating-IP...): the
// address they name must be the SMTP client's, loopback, one of the
// customer's networks or an allowed network. Anything else misstates the
// message's origin.
func (c *Forgery) origin(col *collector, t *policy.Txn) {
	if len(c.s.OriginHeaders) == 0 {
		return
	}
	var nets []netip.Prefix
	if t.Customer != nil {
		nets = t.Customer.Networks
	}
	var clientAddr netip.Addr
	if t.Conn != nil {
		clientAddr = t.Conn.ClientAddr.Unmap()
	}
	for _, name := range c.s.OriginHeaders {
		for _, v := range fieldValues(t.Headers, name) {
			addrs, bad := OriginAddrs(v)
			if len(bad) > 0 || len(addrs) == 0 {
				col.add(forgeryFinding(FindingOriginInvalid,
					fmt.Sprintf("%s %q is not an IP address", name, clip(unfold(v))),
					map[string]string{"header": name}))
			}
			for _, a := range addrs {
				switch {
				case a == clientAddr, a.IsLoopback(), containsAddr(nets, a), containsAddr(c.s.OriginAllowed, a):
				case c.s.Provider.OwnsAddr(a):
					col.add(forgeryFinding(FindingOriginProvider,
						fmt.Sprintf("%s names the provider's address %s", name, a),
						map[string]string{"header": name, "addr": a.String()}))
				default:
					col.add(forgeryFinding(FindingOriginForeign,
						fmt.Sprintf("%s names %s, not an address of customer %s", name, a, customerID(t)),
						map[string]string{"header": name, "addr": a.String()}))
				}
			}
		}
	}
}

func customerID(t *policy.Txn) string {
	if t.Customer == nil {
		return ""
	}
	return t.Customer.ID
}

// lowerIs reports whether strings.ToLower(name) == strings.ToLower(field)
// for an ASCII field name, without lower-casing copies: ASCII names compare
// byte by byte ignoring case; a name with other bytes is lower-cased as
// before (the rare case, so the result stays exactly ToLower's).
func lowerIs(name, field string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			// Exactly ToLower's equality (not EqualFold's Unicode
			// folding, which also matches e.g. "ſ" with "s").
			ln, lf := strings.ToLower(name), strings.ToLower(field)
			return ln == lf
		}
	}
	if len(name) != len(field) {
		return false
	}
	for i := 0; i < len(name); i++ {
		a, b := name[i], field[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
