package policy

import (
	"net/netip"
	"strings"
	"time"

	"github.com/aupguard/aupguard/authres"
	"github.com/aupguard/aupguard/mailaddr"
)

// Mode says whether a customer's verdicts are enforced or only logged.
type Mode int

// The modes. In Monitor mode every check runs and logs what it would do,
// and the mail is accepted: this is how a provider rolls the gateway out.
const (
	Enforce Mode = iota
	Monitor
)

// String returns the mode's config name.
func (m Mode) String() string {
	if m == Monitor {
		return "monitor"
	}
	return "enforce"
}

// CustomerOverride is a customer's own setting for one check; nil fields
// inherit the provider-wide setting.
type CustomerOverride struct {
	Enabled  *bool
	Action   *Action
	Findings map[string]Action
}

// Customer is an identified sender: the provider's customer a message is
// attributed to. Check-specific per-customer settings (limits, keys) are
// resolved by each check from the config when it is built.
type Customer struct {
	ID           string
	Name         string
	AbuseContact string
	Mode         Mode
	// Domains are the sender domains the customer may use, normalised
	// (lower-case A-labels); a "*." prefix also matches every subdomain.
	Domains   []mailaddr.Pattern
	Overrides map[string]CustomerOverride
}

// OwnsDomain reports whether the customer may send as domain. The domain is
// normalised first, so case, a trailing dot and U-labels do not matter.
func (c *Customer) OwnsDomain(domain string) bool {
	d, err := mailaddr.NormalizeDomain(domain)
	if err != nil || d == "" {
		return false
	}
	for _, p := range c.Domains {
		if p.Match(d) {
			return true
		}
	}
	return false
}

// Conn is what is known of the SMTP connection a message came in on.
type Conn struct {
	ClientAddr netip.Addr
	ClientName string
	Helo       string
	DaemonName string
	// AuthLogin is the SASL login ({auth_authen}), empty when the client
	// did not authenticate.
	AuthLogin string
}

// Header is one header field as received. Value is the raw value after the
// colon, including leading white space and folding (lines joined by CRLF).
type Header struct {
	Name  string
	Value string
}

// Rcpt is one envelope recipient.
type Rcpt struct {
	Addr mailaddr.Address
	// Args are the RCPT TO ESMTP parameters, keys upper-cased.
	Args map[string]string
}

// Txn is one mail transaction as the checks see it: envelope, headers,
// running body size, and a place for each check's own per-message state.
// A Txn is used by one goroutine at a time.
type Txn struct {
	Conn     *Conn
	Customer *Customer
	// QueueID is the MTA's queue id (Postfix macro "i"), known from DATA on.
	QueueID string
	// Ref is the gateway's reference id for this message; it appears in the
	// client-facing reply text and in every log line and event.
	Ref string
	// Start is when MAIL FROM was seen (from the injected clock).
	Start    time.Time
	MailFrom mailaddr.Address
	// MailArgs are the MAIL FROM ESMTP parameters, keys upper-cased (SIZE, BODY...).
	MailArgs map[string]string
	// Rcpts are the recipients accepted so far.
	Rcpts []*Rcpt
	// Headers in the order received.
	Headers []Header
	// HeaderBytes counts the header section's size as received.
	HeaderBytes int64
	// BodySize counts body bytes seen so far.
	BodySize int64
	// Auth are the sender-authentication results, filled by the spf, dkim,
	// dkim_sign and dmarc checks in chain order and read by the checks
	// after them: typed, so that no check reads another's private state.
	Auth authres.Results

	values map[any]any
	adds   []Header
}

// NewTxn starts a transaction on conn for customer.
func NewTxn(conn *Conn, c *Customer, ref string, start time.Time) *Txn {
	return &Txn{Conn: conn, Customer: c, Ref: ref, Start: start}
}

// Value returns the per-message state a check stored under key.
func (t *Txn) Value(key any) any { return t.values[key] }

// SetValue stores per-message state under key; use an unexported key type.
func (t *Txn) SetValue(key, v any) {
	if t.values == nil {
		t.values = make(map[any]any)
	}
	t.values[key] = v
}

// HeaderValues returns the raw values of every header named name
// (case-insensitive), in order.
func (t *Txn) HeaderValues(name string) []string {
	var out []string
	for _, h := range t.Headers {
		if strings.EqualFold(h.Name, name) {
			out = append(out, h.Value)
		}
	}
	return out
}

// Size is the message size seen so far: header section plus body.
func (t *Txn) Size() int64 { return t.HeaderBytes + t.BodySize }

// AddHeader asks for a header to be prepended to the message when it is
// accepted (a DKIM-Signature, List-Unsubscribe, a feedback id...). Added
// headers are applied in the order added.
func (t *Txn) AddHeader(name, value string) {
	t.adds = append(t.adds, Header{Name: name, Value: value})
}

// AddedHeaders returns the headers checks asked to add.
func (t *Txn) AddedHeaders() []Header { return t.adds }

// RcptAddrs returns the accepted recipients' addresses.
func (t *Txn) RcptAddrs() []mailaddr.Address {
	out := make([]mailaddr.Address, len(t.Rcpts))
	for i, r := range t.Rcpts {
		out[i] = r.Addr
	}
	return out
}
