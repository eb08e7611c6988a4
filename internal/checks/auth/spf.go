package auth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
)

// SPFName is the SPF check's name.
const SPFName = "spf"

// Findings of the spf check. Each names the SPF result (RFC 7208 §2.6)
// that receivers will compute for the provider's egress addresses.
const (
	FindingSPFFail      = "spf_fail"
	FindingSPFSoftFail  = "spf_softfail"
	FindingSPFNeutral   = "spf_neutral"
	FindingSPFNone      = "spf_none"
	FindingSPFPermError = "spf_permerror"
)

var (
	// RFC 7372 §3.2: X.7.23 SPF validation failed.
	replySPFFail = policy.MustReply(550, "5.7.23", "SPF of the sender domain does not authorize our servers")
	// RFC 7372 §3.2: X.7.24 SPF validation error (permerror).
	replySPFError = policy.MustReply(550, "5.7.24", "SPF record of the sender domain is invalid")
)

// spfRank orders results from best to worst, to report the worst over
// several egress addresses.
var spfRank = map[spf.Result]int{
	spf.Pass: 0, spf.None: 1, spf.Neutral: 2, spf.SoftFail: 3, spf.Fail: 4, spf.PermError: 5, spf.TempError: 6,
}

// SPFCheck evaluates the envelope sender's SPF record against the addresses
// receivers will see the mail come from: the provider's egress addresses,
// not the customer's client address (the customer hands mail to the
// provider, the provider's MTAs send it on). It runs at MAIL FROM.
type SPFCheck struct {
	egress  []netip.Addr
	helo    string
	res     resolver.Resolver
	timeout time.Duration
}

// WithHelo sets the HELO name of the provider's egress MTAs: the identity
// receivers check for null-sender mail (RFC 7208 §2.4), used instead of
// the HELO name the customer gave the gateway, which no receiver sees.
func (c *SPFCheck) WithHelo(name string) *SPFCheck {
	c.helo = name
	return c
}

// NewSPF returns the spf check for the given egress addresses. With none,
// the check records nothing: there is no address to evaluate. timeout
// bounds the whole evaluation (every lookup of every egress address), so
// that SPF never holds the MAIL FROM reply longer than one DNS timeout.
func NewSPF(egress []netip.Addr, r resolver.Resolver, timeout time.Duration) *SPFCheck {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &SPFCheck{egress: egress, res: r, timeout: timeout}
}

// Name implements policy.Check.
func (c *SPFCheck) Name() string { return SPFName }

// Mail evaluates SPF at MAIL FROM.
func (c *SPFCheck) Mail(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	if len(c.egress) == 0 {
		return nil, nil
	}
	// RFC 7208 §2.4: the MAIL FROM identity; for the null sender the HELO
	// identity, with "postmaster" as local part.
	// The HELO receivers see is the provider's egress MTA's, not the
	// customer's (the customer's HELO only reached the gateway): a bounce
	// is judged on the identity the receiver will judge (RFC 7208 §2.4,
	// RFC 7489 §3.1.2), and DMARC for it rests on that and DKIM.
	sender, domain, scope := t.MailFrom.String(), t.MailFrom.Domain, "mailfrom"
	helo := c.helo
	if t.MailFrom.Null || domain == "" {
		domain, scope = helo, "helo"
		sender = "postmaster@" + helo
	}
	domain = normalize(domain)
	res := &SPFResult{Domain: domain, Scope: scope}
	if domain == "" || !isDomainName(domain) {
		// RFC 7208 §4.3: a malformed or missing domain is "none".
		res.Result = string(spf.None)
		get(t).SPF = res
		return []policy.Finding{spfFinding(res, "no domain to evaluate (null sender, and provider.helo_name / provider.hostnames give no HELO name of the egress MTAs)")}, nil
	}
	ctx, cancel := clock.WithTimeout(ctx, c.timeout)
	defer cancel()
	var worst spf.Result
	var worstErr error
	for i, ip := range c.egress {
		r, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sender,
			spf.WithResolver(c.res), spf.WithContext(ctx))
		if i == 0 || spfRank[r] > spfRank[worst] {
			worst, worstErr, res.IP = r, err, ip.String()
		}
	}
	res.Result = string(worst)
	if worst == spf.TempError {
		// RFC 7208 §2.6.6: a transient error; the message may be retried.
		return nil, policy.ErrorWithReply(fmt.Errorf("spf %s for %s from %s: %v", worst, domain, res.IP, worstErr), policy.ReplyDirectoryFailure)
	}
	get(t).SPF = res
	if worst == spf.Pass {
		return nil, nil
	}
	detail := fmt.Sprintf("SPF %s for %s (%s) from egress %s", worst, domain, scope, res.IP)
	if worstErr != nil {
		detail += ": " + worstErr.Error()
	}
	return []policy.Finding{spfFinding(res, detail)}, nil
}

func spfFinding(res *SPFResult, detail string) policy.Finding {
	f := policy.Finding{Detail: detail, Action: policy.Accept,
		Attrs: map[string]string{"domain": res.Domain, "result": res.Result, "scope": res.Scope}}
	if res.IP != "" {
		f.Attrs["ip"] = res.IP
	}
	switch spf.Result(res.Result) {
	case spf.Fail:
		f.Name, f.Reply = FindingSPFFail, replySPFFail
	case spf.SoftFail:
		f.Name, f.Reply = FindingSPFSoftFail, replySPFFail
	case spf.Neutral:
		f.Name, f.Reply = FindingSPFNeutral, replySPFFail
	case spf.PermError:
		f.Name, f.Reply = FindingSPFPermError, replySPFError
	default:
		f.Name, f.Reply = FindingSPFNone, replySPFFail
	}
	return f
}

// isDomainName reports whether d (normalised) has at least two labels; an
// address literal or a bare host name has no SPF record to speak of.
func isDomainName(d string) bool {
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] == '.' {
			return true
		}
	}
	return false
}
