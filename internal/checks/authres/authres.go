// Package authres holds the typed results of sender authentication that
// the auth family's checks share through the transaction (its output
// auth.Results, a policy.Output): the SPF
// evaluation, the DKIM verifications, the gateway's own planned signature
// and the DMARC evaluation. The auth checks fill them in chain order; the
// checks after them (dmarc) read them. No I/O here.
package authres

// Mode is a DMARC identifier alignment mode (RFC 7489 §3.1).
type Mode byte

// The alignment modes: relaxed (organizational domains equal, the default
// of adkim and aspf) and strict (domains equal).
const (
	Relaxed Mode = 'r'
	Strict  Mode = 's'
)

// String returns the mode as the adkim/aspf tags write it.
func (m Mode) String() string {
	if m == Strict {
		return "s"
	}
	return "r"
}

// SPFResult is the SPF evaluation of a message (RFC 7208 §2.6).
type SPFResult struct {
	// Result is pass, fail, softfail, neutral, none, temperror or permerror:
	// the worst over the provider's egress addresses.
	Result string
	// Domain is the identity checked: the MAIL FROM domain, or the HELO
	// name for the null sender (RFC 7208 §2.4).
	Domain string
	// Scope is "mailfrom" or "helo".
	Scope string
	// IP is the egress address that gave Result.
	IP string
}

// Pass reports whether SPF passed for every egress address.
func (r SPFResult) Pass() bool { return r.Result == "pass" }

// DKIMResult is the verification of one DKIM signature the message
// carried when it reached the gateway.
type DKIMResult struct {
	// Domain is the signing domain (d=), normalised.
	Domain string
	// Result is pass, fail, permerror or temperror (RFC 8601 §2.7.1).
	Result string
	// Err says why the signature did not pass.
	Err string
}

// Signing is the signature the gateway itself will add.
type Signing struct {
	Domain   string
	Selector string
}

// DMARCResult is the DMARC evaluation of a message.
type DMARCResult struct {
	// FromDomain is the RFC5322.From domain, normalised.
	FromDomain string
	// RecordDomain is where the record was found (the From domain or its
	// organizational domain); empty without record.
	RecordDomain string
	// Policy is the policy that applies: none, quarantine, reject, or ""
	// without record (the sp= policy for a subdomain, RFC 7489 §6.3).
	Policy string
	// ADKIM and ASPF are the alignment modes used.
	ADKIM, ASPF Mode
	// SPFAligned and DKIMAligned say which identifier passed aligned;
	// DKIMAligned counts the gateway's own signature.
	SPFAligned, DKIMAligned bool
}

// Pass reports whether DMARC passes (RFC 7489 §4.2).
func (r DMARCResult) Pass() bool { return r.SPFAligned || r.DKIMAligned }

// Results are one message's authentication results. A nil pointer (or
// DKIMRan false) means the check that computes it did not run.
type Results struct {
	// FromParsed says FromDomain was computed; FromDomain is the domain of
	// the single RFC5322.From mailbox, normalised, "" when there is none.
	FromParsed bool
	FromDomain string

	SPF     *SPFResult
	DKIM    []DKIMResult
	DKIMRan bool
	Sign    *Signing
	DMARC   *DMARCResult
}

// AnyDKIMPass reports whether one of the message's signatures verified.
func (r *Results) AnyDKIMPass() bool {
	for _, d := range r.DKIM {
		if d.Result == "pass" {
			return true
		}
	}
	return false
}
