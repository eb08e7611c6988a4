package policy

import (
	"net/netip"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/mailaddr"
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
// attributed to. The families' own settings of the customer (limits, bulk
// mail, alignment) are in Settings, each read by its family (SettingsOf).
type Customer struct {
	ID           string
	Name         string
	AbuseContact string
	// Reseller is the id of the customer's reseller (config resellers:),
	// empty for the provider's own customers.
	Reseller string
	Mode     Mode
	// Domains are the sender domains the customer may use, normalised
	// (lower-case A-labels); a "*." prefix also matches every subdomain.
	Domains []mailaddr.Pattern
	// Networks are the customer's client networks, parsed once by the
	// customer directory.
	Networks []netip.Prefix
	// Overrides are the customer's own settings of checks (nil: none).
	Overrides map[string]CustomerOverride
	// Settings are the families' settings of this customer.
	Settings Settings
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
	// Local is set for mail submitted on the MTA host itself (sendmail,
	// Postfix pickup and non_smtpd_milters) rather than over SMTP.
	Local bool
	// LocalLogin is the Unix login of a local message whose envelope
	// sender is that login's own address on the MTA host (sendmail run
	// without -f), which Postfix's local_login_sender_maps proves.
	LocalLogin string
}

// Login is the login a message was sent with: the SASL login, or the Unix
// login of local submission; "" when neither is known (a client
// identified by its network alone).
func (c *Conn) Login() string {
	if c == nil {
		return ""
	}
	if c.AuthLogin != "" {
		return c.AuthLogin
	}
	return c.LocalLogin
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
// running body size, and typed places for each check's own per-message
// state and the results it shares (State, Output).
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
	// DryRun is set when the transaction is only explained (aupguard
	// explain): every check must leave the stores as they are, reading
	// counters without adding to them. A check that cannot decide without
	// writing reports what it can read and writes nothing.
	DryRun bool

	// slots hold the checks' typed per-message state and results (State,
	// Output), indexed by the key's slot.
	slots   []any
	adds    []Header
	removed []RemovedHeader
}

// RemovedHeader names one received header field the gateway deletes from
// the message: the Index-th (1-based) field called Name, counted among the
// fields of that name as received (the milter protocol's SMFIR_CHGHEADER
// index, RFC-less but shared by Sendmail and Postfix).
type RemovedHeader struct {
	Name  string
	Index int
	Value string
}

// NewTxn starts a transaction on conn for customer.
func NewTxn(conn *Conn, c *Customer, ref string, start time.Time) *Txn {
	return &Txn{Conn: conn, Customer: c, Ref: ref, Start: start}
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

// RemoveHeaders deletes every received field named name (case-insensitive)
// for which drop returns true, from Headers (so the checks after, and the
// DKIM signer, see the message as it will leave) and from the message the
// MTA delivers. It returns how many fields were removed.
func (t *Txn) RemoveHeaders(name string, drop func(value string) bool) int {
	// kept is made at the first removal only: a message without such
	// fields (the usual case) costs no copy. The array of Headers is never
	// written to, since others may hold it.
	var kept []Header
	n, idx := 0, 0
	// Fields of this name removed by an earlier call no longer count in
	// Headers; the milter index counts them (exact when they came first).
	prior := t.removedBefore(name)
	for i, h := range t.Headers {
		if !strings.EqualFold(strings.TrimRight(h.Name, " \t"), name) {
			if kept != nil {
				kept = append(kept, h)
			}
			continue
		}
		idx++
		if !drop(h.Value) {
			if kept != nil {
				kept = append(kept, h)
			}
			continue
		}
		if kept == nil {
			kept = make([]Header, i, len(t.Headers)-1)
			copy(kept, t.Headers[:i])
		}
		n++
		t.removed = append(t.removed, RemovedHeader{Name: h.Name, Index: idx + prior, Value: h.Value})
	}
	if kept != nil {
		t.Headers = kept
	}
	return n
}

// removedBefore counts fields of name already removed by an earlier call,
// so that indexes keep referring to the message as received.
func (t *Txn) removedBefore(name string) int {
	n := 0
	for _, r := range t.removed {
		if strings.EqualFold(strings.TrimRight(r.Name, " \t"), name) {
			n++
		}
	}
	return n
}

// RemovedHeaders returns the received fields to delete, in the order removed.
func (t *Txn) RemovedHeaders() []RemovedHeader { return t.removed }

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
