package auth

import (
	"github.com/aupguard/aupguard/headers"
	"github.com/aupguard/aupguard/internal/checks/authres"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// The result types are package authres's, the auth family's result types
// (a package without the checks' dependencies).
type (
	// SPFResult is the SPF evaluation of a message.
	SPFResult = authres.SPFResult
	// DKIMResult is the verification of one DKIM signature.
	DKIMResult = authres.DKIMResult
	// Signing is the signature the gateway itself will add.
	Signing = authres.Signing
	// DMARCResult is the DMARC evaluation of a message.
	DMARCResult = authres.DMARCResult
)

// Results are the message's sender-authentication results: the spf,
// dkim, dkim_sign and dmarc checks each fill their part, in chain order; a
// check that reads a part names its producer in its Spec.Needs (dmarc
// needs spf and dkim).
var Results = policy.NewOutput[*authres.Results](SPFName, DKIMName, SignName, DMARCName)

// get returns the transaction's authentication results, made at the first
// auth check of the message.
func get(t *policy.Txn) *authres.Results {
	if r, ok := Results.Get(t); ok {
		return r
	}
	r := &authres.Results{}
	Results.Set(t, r)
	return r
}

// FromDomain returns the domain of the message's RFC5322.From address,
// normalised, or "" when there is not exactly one From field with exactly
// one mailbox (RFC 7489 §6.6.1 leaves such messages to other checks; the
// header checks refuse them).
func FromDomain(t *policy.Txn) string {
	r := get(t)
	if r.FromParsed {
		return r.FromDomain
	}
	r.FromParsed = true
	vals := t.HeaderValues("From")
	if len(vals) != 1 {
		return ""
	}
	mbs, err := headers.ParseMailboxList(vals[0])
	if err != nil || len(mbs) != 1 {
		return ""
	}
	r.FromDomain = normalize(mbs[0].Domain)
	return r.FromDomain
}

// SPF returns the message's SPF result; ok is false when the spf check did
// not evaluate it.
func SPF(t *policy.Txn) (res SPFResult, ok bool) {
	if r := get(t); r.SPF != nil {
		return *r.SPF, true
	}
	return SPFResult{}, false
}

// DKIM returns the verification of each DKIM signature the message
// carried; ok is false when the dkim check did not run.
func DKIM(t *policy.Txn) (res []DKIMResult, ok bool) {
	if r := get(t); r.DKIMRan {
		return append([]DKIMResult(nil), r.DKIM...), true
	}
	return nil, false
}

// GatewaySigning returns the signature the gateway will add to the message
// when it accepts it; ok is false when it will not sign.
func GatewaySigning(t *policy.Txn) (s Signing, ok bool) {
	if r := get(t); r.Sign != nil {
		return *r.Sign, true
	}
	return Signing{}, false
}

// DMARC returns the message's DMARC evaluation; ok is false when the
// dmarc check did not evaluate it.
func DMARC(t *policy.Txn) (res DMARCResult, ok bool) {
	if r := get(t); r.DMARC != nil {
		return *r.DMARC, true
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
	r := get(t)
	if r.DMARC != nil {
		return r.DMARC.DKIMAligned, true
	}
	from := FromDomain(t)
	if from == "" || (!r.DKIMRan && r.Sign == nil) {
		return false, false
	}
	return dkimAligned(r, Relaxed, from), true
}

// dkimAligned reports whether a passing signature or the gateway's own
// is aligned with from under mode.
func dkimAligned(r *authres.Results, mode Mode, from string) bool {
	if r.Sign != nil && Aligned(mode, r.Sign.Domain, from) {
		return true
	}
	for _, d := range r.DKIM {
		if d.Result == "pass" && Aligned(mode, d.Domain, from) {
			return true
		}
	}
	return false
}
