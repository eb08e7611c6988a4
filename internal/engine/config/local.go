package config

import (
	"fmt"
	"strings"

	"github.com/aupguard/aupguard/internal/mailaddr"
)

// Values of local_submission.sender_binding and the fixed outcomes of
// local_submission.unattributed.
const (
	SenderBindingNone    = "none"
	SenderBindingPostfix = "postfix"

	LocalUnattributedDefer  = "defer"
	LocalUnattributedReject = "reject"

	LocalDeferralsDefer = "defer"
	LocalDeferralsHold  = "hold"
)

// LocalSubmissionConfig is how mail submitted on the MTA host itself is
// attributed: sendmail(1), PHP mail(), cron, which Postfix takes through
// postdrop and pickup and hands to non_smtpd_milters. Such mail has no SASL
// login and no client network: Postfix presents it to the milter as a
// connection from "localhost" [127.0.0.1] port 0, and hides the
// "Received: ... (Postfix, from userid N)" line it writes. The only
// identity the milter sees is the envelope sender, which the submitting
// user chooses freely (sendmail -f) unless Postfix binds it to the Unix
// login with local_login_sender_maps (Postfix 3.6 and later).
type LocalSubmissionConfig struct {
	// SenderBinding says whether Postfix binds the envelope sender of
	// local mail to the Unix login: "postfix" (local_login_sender_maps is
	// set as "aupguard postfix-senders" prints it; the envelope sender
	// then proves the customer) or "none" (the default: nothing the milter
	// sees proves who submitted, so no local mail is attributed to a
	// customer and all of it gets Unattributed).
	SenderBinding string `yaml:"sender_binding"`
	// LoginDomains are the domains Postfix appends to a bare login name
	// (myorigin): "web1@LOGIN_DOMAIN" is the default sender of the Unix
	// user web1. Default: the exact names in provider.hostnames.
	LoginDomains []string `yaml:"login_domains"`
	// Unattributed is what local mail that no customer's local_users
	// submitted gets (root's cron mail, a user no customer lists, any
	// local mail when sender_binding is "none"): "defer" (the default:
	// Postfix keeps it in the maildrop queue and retries; nothing
	// bounces), "reject" (Postfix bounces it to the sender), or the id of
	// a customer, e.g. a provider-owned "system" customer with its own
	// domains and limits.
	Unattributed string `yaml:"unattributed"`
	// Deferrals is what a policy deferral (a rate limit, quota, spike or
	// per-recipient cap; not a failing store or DNS) of local mail
	// becomes: "defer" (the default: 4xx, the message stays in the
	// maildrop queue) or "hold" (accepted into Postfix's HOLD queue for
	// the postmaster to release or delete). Postfix's pickup retries every
	// deferred maildrop file at each scan, and each new submission starts
	// one: a compromised site's backlog of N messages costs about N
	// decisions per submission (100 messages over the limit: some 5,700
	// decisions in 17 s in the end-to-end measurement), which hold avoids.
	Deferrals string `yaml:"deferrals"`
}

func (l *LocalSubmissionConfig) defaults(p *ProviderConfig) {
	if l.SenderBinding == "" {
		l.SenderBinding = SenderBindingNone
	}
	if l.Unattributed == "" {
		l.Unattributed = LocalUnattributedDefer
	}
	if l.Deferrals == "" {
		l.Deferrals = LocalDeferralsDefer
	}
	if l.LoginDomains == nil {
		for _, h := range p.Hostnames {
			if !strings.HasPrefix(h, "*.") {
				l.LoginDomains = append(l.LoginDomains, h)
			}
		}
	}
}

// UnattributedCustomer returns the customer id local_submission.unattributed
// names, or "" when it is defer or reject.
func (l *LocalSubmissionConfig) UnattributedCustomer() string {
	switch l.Unattributed {
	case LocalUnattributedDefer, LocalUnattributedReject:
		return ""
	}
	return l.Unattributed
}

func (c *Config) validateLocal(v *validator) {
	l := &c.LocalSubmission
	switch l.SenderBinding {
	case SenderBindingNone, SenderBindingPostfix:
	default:
		v.errf("local_submission.sender_binding", "want %s or %s, got %q", SenderBindingPostfix, SenderBindingNone, l.SenderBinding)
	}
	if l.Deferrals != LocalDeferralsDefer && l.Deferrals != LocalDeferralsHold {
		v.errf("local_submission.deferrals", "want %s or %s, got %q", LocalDeferralsDefer, LocalDeferralsHold, l.Deferrals)
	}
	for i, d := range l.LoginDomains {
		if _, err := mailaddr.NormalizeDomain(d); err != nil || d == "" || strings.HasPrefix(d, "*.") {
			v.errf(fmt.Sprintf("local_submission.login_domains[%d]", i), "bad domain %q: want an exact domain such as Postfix's myorigin", d)
		}
	}
	if id := l.UnattributedCustomer(); id != "" {
		found := false
		for _, cu := range c.Customers {
			if cu.ID == id {
				found = true
				if len(cu.LocalUsers) > 0 {
					v.errf("local_submission.unattributed", "customer %q also lists local_users: the customer for unattributed local mail must be a provider-owned one of its own", id)
				}
			}
		}
		if !found {
			v.errf("local_submission.unattributed", "want defer, reject or the id of a customer, got %q (no such customer)", id)
		}
	}
	users := map[string]string{}
	domains := map[string]string{}
	for i, cu := range c.Customers {
		for j, u := range cu.LocalUsers {
			p := fmt.Sprintf("customers[%d].local_users[%d]", i, j)
			if err := validUnixLogin(u); err != nil {
				v.errf(p, "%v", err)
				continue
			}
			if other, dup := users[u]; dup && other != cu.ID {
				v.errf(p, "Unix user %q also belongs to customer %q", u, other)
			}
			users[u] = cu.ID
		}
		if len(cu.LocalUsers) == 0 {
			continue
		}
		// Local mail is attributed by the sender's domain: two customers
		// whose users may both send as one domain cannot be told apart.
		for j, d := range cu.Domains {
			key := strings.ToLower(d)
			if other, dup := domains[key]; dup && other != cu.ID {
				v.errf(fmt.Sprintf("customers[%d].domains[%d]", i, j), "domain %q is also customer %q's, and both have local_users: local mail from it could not be attributed", d, other)
			}
			domains[key] = cu.ID
		}
	}
}

// validUnixLogin accepts a Unix login name, or "uid:N" as Postfix's
// local_login_sender_maps names a uid without a password entry.
func validUnixLogin(u string) error {
	if rest, ok := strings.CutPrefix(u, "uid:"); ok {
		if rest == "" || strings.Trim(rest, "0123456789") != "" {
			return fmt.Errorf("bad local user %q: want a login name or uid:NUMBER", u)
		}
		return nil
	}
	if u == "" || len(u) > 32 || u[0] == '-' {
		return fmt.Errorf("bad local user %q: want a Unix login name", u)
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '$') {
			return fmt.Errorf("bad local user %q: character %q not allowed in a Unix login name", u, r)
		}
	}
	return nil
}
