package headers

import (
	"context"
	"fmt"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// IdentityName is the name of the sender identity check.
const IdentityName = "sender_identity"

// Findings of sender_identity.
const (
	FindingMailFromNoDomain    = "mail_from_no_domain"
	FindingMailFromNotOwned    = "mail_from_domain_not_owned"
	FindingFromUnparsable      = "from_unparsable"
	FindingFromNotOwned        = "from_domain_not_owned"
	FindingSenderMissing       = "sender_missing"
	FindingSenderUnparsable    = "sender_unparsable"
	FindingSenderNotOwned      = "sender_domain_not_owned"
	FindingDisplayNameImperson = "display_name_impersonation"
	FindingResentUnparsable    = "resent_unparsable"
	FindingResentFromNotOwned  = "resent_from_domain_not_owned"
	FindingResentSenderMissing = "resent_sender_missing"
	FindingResentSenderNotOwn  = "resent_sender_domain_not_owned"
)

// Identity is the sender_identity check: the customer may only send as
// its own domains, in the envelope and in the author fields, and may not
// pose as another sender in a display name (AUP: "assume the identity of
// any sender").
type Identity struct {
	s *Settings
}

// NewIdentity builds the sender_identity check.
func NewIdentity(s *Settings) *Identity { return &Identity{s: s} }

// Name implements policy.Check.
func (c *Identity) Name() string { return IdentityName }

func identityFinding(name, detail string, attrs map[string]string) policy.Finding {
	return policy.Finding{Name: name, Detail: detail, Action: policy.Reject, Reply: ReplySender, Attrs: attrs}
}

// Mail implements policy.MailChecker: the envelope sender's domain.
func (c *Identity) Mail(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	if t.Customer == nil {
		return nil, nil
	}
	a := t.MailFrom
	// RFC 5321 §4.5.5: the null reverse-path "<>" is for notifications
	// (bounces, DSNs); it names no sender to check. The header checks
	// still run at end of message.
	if a.Null {
		return nil, nil
	}
	// RFC 5321 §4.1.2: a Mailbox is Local-part "@" domain; an unqualified
	// sender names no domain the customer could own.
	if a.Domain == "" {
		return []policy.Finding{identityFinding(FindingMailFromNoDomain,
			fmt.Sprintf("MAIL FROM %q has no domain", clip(a.String())), nil)}, nil
	}
	// Mail submitted on the MTA host with sendmail but without -f has the
	// submitting Unix login's own address at the host as envelope sender;
	// Postfix's local_login_sender_maps proved it is that customer's login
	// (customer.LocalIdentifier), and bounces go back to its mailbox. The
	// author fields are still checked at end of message.
	if t.Conn != nil && t.Conn.LocalLogin != "" {
		return nil, nil
	}
	if !t.Customer.OwnsDomain(a.Domain) {
		return []policy.Finding{identityFinding(FindingMailFromNotOwned,
			fmt.Sprintf("MAIL FROM domain %s is not one of customer %s's domains", a.Domain, t.Customer.ID),
			map[string]string{"domain": a.Domain})}, nil
	}
	return nil, nil
}

// EOM implements policy.EOMChecker: From:, Sender: and display names.
func (c *Identity) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	if t.Customer == nil {
		return nil, nil
	}
	var col collector
	cust := t.Customer
	// A missing or repeated From: is header_forgery's finding; every From:
	// present is checked here, so a second From: cannot smuggle a foreign
	// author past the first.
	authors := 0 // the most mailboxes in one From:
	for _, v := range fieldValues(t.Headers, "From") {
		// RFC 5322 §3.6.2: from = "From:" mailbox-list.
		ms, err := ParseMailboxList(v)
		if err != nil {
			col.add(identityFinding(FindingFromUnparsable,
				fmt.Sprintf("From %q: %v", clip(unfold(v)), err), nil))
			continue
		}
		authors = max(authors, len(ms))
		for _, m := range ms {
			if !ownsMailboxDomain(cust, m) {
				col.add(identityFinding(FindingFromNotOwned,
					fmt.Sprintf("From domain %s is not one of customer %s's domains", clip(m.Domain), cust.ID),
					map[string]string{"domain": displayDomain(m.Domain)}))
			}
			c.displayName(&col, cust, "From", m)
		}
	}
	senders := fieldValues(t.Headers, "Sender")
	// RFC 5322 §3.6.2: with more than one author, Sender: MUST name the
	// mailbox responsible for the transmission.
	if authors > 1 && len(senders) == 0 {
		col.add(identityFinding(FindingSenderMissing,
			fmt.Sprintf("From has %d mailboxes and there is no Sender", authors), nil))
	}
	for _, v := range senders {
		// RFC 5322 §3.6.2: sender = "Sender:" mailbox.
		m, err := ParseMailbox(v)
		if err != nil {
			col.add(identityFinding(FindingSenderUnparsable,
				fmt.Sprintf("Sender %q: %v", clip(unfold(v)), err), nil))
			continue
		}
		if !ownsMailboxDomain(cust, m) {
			col.add(identityFinding(FindingSenderNotOwned,
				fmt.Sprintf("Sender domain %s is not one of customer %s's domains", clip(m.Domain), cust.ID),
				map[string]string{"domain": displayDomain(m.Domain)}))
		}
		c.displayName(&col, cust, "Sender", m)
	}
	c.resent(&col, t)
	return col.findings(), nil
}

// resent applies the author rule to the resent fields: RFC 5322 §3.6.6
// says Resent-From and Resent-Sender name who reintroduced the message,
// with the meaning From and Sender have (resent-from = "Resent-From:"
// mailbox-list, resent-sender = "Resent-Sender:" mailbox). A receiver or a
// person reading the message sees them as the sender, so they must be the
// customer's, display names included. Every block is checked, not only the
// topmost: a later block cannot smuggle a foreign sender either.
func (c *Identity) resent(col *collector, t *policy.Txn) {
	cust := t.Customer
	authors := 0
	for _, v := range fieldValues(t.Headers, "Resent-From") {
		ms, err := ParseMailboxList(v)
		if err != nil {
			col.add(identityFinding(FindingResentUnparsable,
				fmt.Sprintf("Resent-From %q: %v", clip(unfold(v)), err), nil))
			continue
		}
		authors = max(authors, len(ms))
		for _, m := range ms {
			if !ownsMailboxDomain(cust, m) {
				col.add(identityFinding(FindingResentFromNotOwned,
					fmt.Sprintf("Resent-From domain %s is not one of customer %s's domains", clip(m.Domain), cust.ID),
					map[string]string{"domain": displayDomain(m.Domain)}))
			}
			c.displayName(col, cust, "Resent-From", m)
		}
	}
	senders := fieldValues(t.Headers, "Resent-Sender")
	// RFC 5322 §3.6.6 with §3.6.2: several resent authors need a
	// Resent-Sender naming the one responsible.
	if authors > 1 && len(senders) == 0 {
		col.add(identityFinding(FindingResentSenderMissing,
			fmt.Sprintf("Resent-From has %d mailboxes and there is no Resent-Sender", authors), nil))
	}
	for _, v := range senders {
		m, err := ParseMailbox(v)
		if err != nil {
			col.add(identityFinding(FindingResentUnparsable,
				fmt.Sprintf("Resent-Sender %q: %v", clip(unfold(v)), err), nil))
			continue
		}
		if !ownsMailboxDomain(cust, m) {
			col.add(identityFinding(FindingResentSenderNotOwn,
				fmt.Sprintf("Resent-Sender domain %s is not one of customer %s's domains", clip(m.Domain), cust.ID),
				map[string]string{"domain": displayDomain(m.Domain)}))
		}
		c.displayName(col, cust, "Resent-Sender", m)
	}
}

// displayName looks for addresses in what a reader sees next to the
// address: the display name (RFC 2047 decoded, NFKC-normalised, invisible
// characters dropped) and comments. Any whose domain is not the
// customer's is impersonation ("service@paypal.com" <x@customer.example>).
func (c *Identity) displayName(col *collector, cust *policy.Customer, field string, m Mailbox) {
	texts := append([]string{m.Name}, m.Comments...)
	if m.RawName != m.Name {
		texts = append(texts, m.RawName)
	}
	for _, text := range texts {
		for _, d := range AddressLike(text) {
			if cust.OwnsDomain(d) {
				continue
			}
			col.add(identityFinding(FindingDisplayNameImperson,
				fmt.Sprintf("%s display name %q shows an address at %s, not a domain of customer %s", field, clip(Normalize(text)), clip(d), cust.ID),
				map[string]string{"header": field, "domain": displayDomain(d)}))
			return
		}
	}
}

// ownsMailboxDomain compares case-insensitively, without trailing dot, and
// U-labels equal to A-labels (via mailaddr.NormalizeDomain). A domain
// literal ("[192.0.2.1]") is never a customer domain.
func ownsMailboxDomain(cust *policy.Customer, m Mailbox) bool {
	if strings.HasPrefix(m.Domain, "[") {
		return false
	}
	return cust.OwnsDomain(m.Domain)
}

// displayDomain is the normalised domain for reports, or the domain as
// written when it does not normalise.
func displayDomain(d string) string {
	if n, err := mailaddr.NormalizeDomain(d); err == nil && n != "" {
		return n
	}
	return clip(d)
}

// fieldValues returns the raw values of the fields named name. Names are
// compared case-insensitively (RFC 5322 §1.2.2), ignoring white space
// before the colon (obsolete syntax, RFC 5322 §4.5).
func fieldValues(hs []policy.Header, name string) []string {
	var out []string
	for _, h := range hs {
		if strings.EqualFold(strings.TrimRight(h.Name, " \t"), name) {
			out = append(out, h.Value)
		}
	}
	return out
}
