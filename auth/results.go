package auth

import (
	"github.com/aupguard/aupguard/headers"
	"github.com/aupguard/aupguard/policy"
)

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

// results is the per-message state of the auth checks.
type results struct {
	fromDone   bool
	fromDomain string // "" when the From header gives no single domain

	spf     *SPFResult
	dkim    []DKIMResult
	dkimRan bool
	sign    *Signing
	dmarc   *DMARCResult
}

type resultsKey struct{}

func get(t *policy.Txn) *results {
	if r, ok := t.Value(resultsKey{}).(*results); ok {
		return r
	}
	r := &results{}
	t.SetValue(resultsKey{}, r)
	return r
}

func peek(t *policy.Txn) *results {
	r, _ := t.Value(resultsKey{}).(*results)
	return r
}

// FromDomain returns the domain of the message's RFC5322.From address,
// normalised, or "" when there is not exactly one From field with exactly
// one mailbox (RFC 7489 §6.6.1 leaves such messages to other checks; the
// header checks refuse them).
func FromDomain(t *policy.Txn) string {
	r := get(t)
	if r.fromDone {
		return r.fromDomain
	}
	r.fromDone = true
	vals := t.HeaderValues("From")
	if len(vals) != 1 {
		return ""
	}
	mbs, err := headers.ParseMailboxList(vals[0])
	if err != nil || len(mbs) != 1 {
		return ""
	}
	r.fromDomain = normalize(mbs[0].Domain)
	return r.fromDomain
}

// SPF returns the message's SPF result; ok is false when the spf check did
// not evaluate it.
func SPF(t *policy.Txn) (res SPFResult, ok bool) {
	if r := peek(t); r != nil && r.spf != nil {
		return *r.spf, true
	}
	return SPFResult{}, false
}

// DKIM returns the verification of each DKIM signature the message
// carried; ok is false when the dkim check did not run.
func DKIM(t *policy.Txn) (res []DKIMResult, ok bool) {
	if r := peek(t); r != nil && r.dkimRan {
		return append([]DKIMResult(nil), r.dkim...), true
	}
	return nil, false
}

// GatewaySigning returns the signature the gateway will add to the message
// when it accepts it; ok is false when it will not sign.
func GatewaySigning(t *policy.Txn) (s Signing, ok bool) {
	if r := peek(t); r != nil && r.sign != nil {
		return *r.sign, true
	}
	return Signing{}, false
}

// DMARC returns the message's DMARC evaluation; ok is false when the
// dmarc check did not evaluate it.
func DMARC(t *policy.Txn) (res DMARCResult, ok bool) {
	if r := peek(t); r != nil && r.dmarc != nil {
		return *r.dmarc, true
	}
	return DMARCResult{}, false
}

// DKIMAligned reports whether the message has a passing DKIM signature
// aligned with its From domain, counting the signature the gateway will
// add. known is false when that cannot be told: no single From domain, or
// neither the dkim check nor the signer looked at the message. Alignment
// follows the domain's DMARC adkim when the dmarc check ran, relaxed
// otherwise (RFC 7489 §3.1.1).
func DKIMAligned(t *policy.Txn) (aligned, known bool) {
	r := peek(t)
	if r == nil {
		return false, false
	}
	if r.dmarc != nil {
		return r.dmarc.DKIMAligned, true
	}
	from := FromDomain(t)
	if from == "" || (!r.dkimRan && r.sign == nil) {
		return false, false
	}
	return r.dkimAligned(Relaxed, from), true
}

// dkimAligned reports whether a passing signature or the gateway's own
// is aligned with from under mode.
func (r *results) dkimAligned(mode Mode, from string) bool {
	if r.sign != nil && Aligned(mode, r.sign.Domain, from) {
		return true
	}
	for _, d := range r.dkim {
		if d.Result == "pass" && Aligned(mode, d.Domain, from) {
			return true
		}
	}
	return false
}
