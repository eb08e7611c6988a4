package customer

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// How locally submitted mail was attributed (the decision's "by").
const (
	// ByLocalLogin: the envelope sender is a customer's Unix login at one
	// of local_submission.login_domains (sendmail run without -f).
	ByLocalLogin = "local_login"
	// ByLocalSender: the envelope sender's domain is a domain of the one
	// customer with local_users that owns it.
	ByLocalSender = "local_sender"
	// ByLocalUnattributed: nobody's; local_submission.unattributed names
	// the customer it is charged to.
	ByLocalUnattributed = "local_unattributed"
)

// IsLocalSubmission reports whether a milter connection carries mail
// submitted on the MTA host itself rather than over SMTP. For such mail
// (sendmail(1) through postdrop and pickup) Postfix's cleanup emulates the
// SMTP connection with the client "localhost", address 127.0.0.1 and
// port 0 (seen with Postfix 3.7 in the end-to-end test). A TCP client never
// has source port 0 (RFC 9293 §3.1 reserves no such port for a
// connection), so an SMTP client cannot make its connection look local.
func IsLocalSubmission(hostname string, port uint16, addr netip.Addr) bool {
	return port == 0 && hostname == "localhost" && addr.Unmap() == netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// LocalIdentifier attributes locally submitted mail to a customer by its
// envelope sender, which is proof of the submitting Unix login only when
// Postfix binds the two (local_submission.sender_binding: postfix, with
// Postfix's local_login_sender_maps as "aupguard postfix-senders" prints
// it). It is built from a validated config and is read-only.
type LocalIdentifier struct {
	bound        bool
	loginDomains map[string]bool
	byLogin      map[string]*policy.Customer // Unix login -> customer
	local        []*policy.Customer          // customers with local_users
	fallback     *policy.Customer            // local_submission.unattributed customer
	outcome      string                      // defer or reject when fallback is nil
}

// NewLocalIdentifier builds the identifier; the customers are d's.
func NewLocalIdentifier(cfg *config.Config, d *Directory) (*LocalIdentifier, error) {
	ls := cfg.LocalSubmission
	l := &LocalIdentifier{
		bound:        ls.SenderBinding == config.SenderBindingPostfix,
		loginDomains: map[string]bool{},
		byLogin:      map[string]*policy.Customer{},
		outcome:      ls.Unattributed,
	}
	for _, dom := range ls.LoginDomains {
		n, err := mailaddr.NormalizeDomain(dom)
		if err != nil {
			return nil, fmt.Errorf("local_submission.login_domains: %w", err)
		}
		l.loginDomains[n] = true
	}
	for _, cc := range cfg.Customers {
		if len(cc.LocalUsers) == 0 {
			continue
		}
		c, ok := d.ByID(cc.ID)
		if !ok {
			return nil, fmt.Errorf("customer %q not in the directory", cc.ID)
		}
		l.local = append(l.local, c)
		for _, u := range cc.LocalUsers {
			l.byLogin[u] = c
		}
	}
	if id := ls.UnattributedCustomer(); id != "" {
		c, ok := d.ByID(id)
		if !ok {
			return nil, fmt.Errorf("local_submission.unattributed: no customer %q", id)
		}
		l.fallback = c
	}
	return l, nil
}

// LocalResult is the attribution of one locally submitted message.
type LocalResult struct {
	// Customer is nil when the message is not attributed and Outcome says
	// what it gets.
	Customer *policy.Customer
	// By is how it was attributed (ByLocalLogin, ByLocalSender,
	// ByLocalUnattributed).
	By string
	// Outcome is config.LocalUnattributedDefer or
	// config.LocalUnattributedReject when Customer is nil.
	Outcome string
	// Login is the Unix login the envelope sender names when By is
	// ByLocalLogin.
	Login string
	// Detail says why, for the log.
	Detail string
}

// Identify attributes a locally submitted message with envelope sender
// sender (as Postfix qualified it: a bare login gets "@myorigin").
func (l *LocalIdentifier) Identify(sender mailaddr.Address) LocalResult {
	c, by, why := l.attribute(sender)
	if c != nil {
		r := LocalResult{Customer: c, By: by, Detail: why}
		if by == ByLocalLogin {
			r.Login = loginOf(sender)
		}
		return r
	}
	if l.fallback != nil {
		return LocalResult{Customer: l.fallback, By: ByLocalUnattributed, Detail: why}
	}
	return LocalResult{Outcome: l.outcome, Detail: why}
}

func (l *LocalIdentifier) attribute(sender mailaddr.Address) (*policy.Customer, string, string) {
	if !l.bound {
		return nil, "", "local_submission.sender_binding is none: the envelope sender of local mail proves nothing"
	}
	if sender.Null {
		return nil, "", "null envelope sender"
	}
	if sender.Domain == "" || l.loginDomains[sender.Domain] {
		login := loginOf(sender)
		if c, ok := l.byLogin[login]; ok {
			return c, ByLocalLogin, "Unix login " + login
		}
		return nil, "", "local sender " + sender.String() + " is no customer's Unix login"
	}
	var found *policy.Customer
	for _, c := range l.local {
		if c.OwnsDomain(sender.Domain) {
			if found != nil && found != c {
				return nil, "", fmt.Sprintf("sender domain %s belongs to customers %s and %s", sender.Domain, found.ID, c.ID)
			}
			found = c
		}
	}
	if found == nil {
		return nil, "", "sender domain " + sender.Domain + " is no local customer's"
	}
	return found, ByLocalSender, "sender domain " + sender.Domain
}

// loginOf is the login an address at the host names. Postfix's
// local_login_sender_maps ignores address extensions; so does this.
func loginOf(a mailaddr.Address) string {
	if i := strings.IndexByte(a.Local, '+'); i > 0 {
		return a.Local[:i]
	}
	return a.Local
}

// PostfixSenderMap renders, for Postfix's local_login_sender_maps (a
// "texthash:" or "hash:" table), the envelope senders each customer's
// Unix logins may use: the bare login and login@LOGIN_DOMAIN (sendmail
// without -f), and "@domain" for each of the customer's exact domains
// ("*.example.com" patterns have no local_login_sender_maps form and are
// listed as a comment). Logins are in config order.
func PostfixSenderMap(cfg *config.Config) string {
	var b strings.Builder
	b.WriteString("# local_login_sender_maps generated by \"aupguard postfix-senders\" from " + cfg.File + ".\n")
	b.WriteString("# Each Unix login may use only its own customer's sender addresses.\n")
	for _, cu := range cfg.Customers {
		if len(cu.LocalUsers) == 0 {
			continue
		}
		var wild []string
		var doms []string
		for _, d := range cu.Domains {
			p, err := mailaddr.ParsePattern(d)
			if err != nil {
				continue
			}
			if strings.HasPrefix(p.String(), "*.") {
				wild = append(wild, p.String())
				continue
			}
			doms = append(doms, "@"+p.String())
		}
		fmt.Fprintf(&b, "# customer %s\n", cu.ID)
		if len(wild) > 0 {
			fmt.Fprintf(&b, "#   not expressible in local_login_sender_maps (list each subdomain): %s\n", strings.Join(wild, " "))
		}
		for _, u := range cu.LocalUsers {
			pats := []string{u}
			for _, ld := range cfg.LocalSubmission.LoginDomains {
				pats = append(pats, u+"@"+strings.ToLower(ld))
			}
			pats = append(pats, doms...)
			fmt.Fprintf(&b, "%s\t%s\n", u, strings.Join(pats, ", "))
		}
	}
	return b.String()
}
