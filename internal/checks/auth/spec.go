package auth

import "github.com/aupguard/aupguard/internal/engine/policy"

// The sender-authentication checks declare themselves here: names,
// findings with their default actions and replies, and what each needs
// from the checks before it.

var (
	replyDMARCPolicy  = policy.MustReply(550, "5.7.26", "DMARC policy of the From domain refuses unauthenticated mail: sign it with DKIM or pass SPF")
	replyDMARCRequire = policy.MustReply(550, "5.7.26", "Mail must pass DKIM or SPF aligned with the From domain (DMARC)")
)

// SPFSpec declares spf. Its findings are reported, not acted on, by
// default: they say what receivers will compute (RFC 7208 §2.6).
var SPFSpec = policy.Spec{
	Name: SPFName,
	Findings: []policy.FindingSpec{
		{Name: FindingSPFFail, Action: policy.Accept, Reply: replySPFFail, Doc: "SPF fail for an egress address"},
		{Name: FindingSPFSoftFail, Action: policy.Accept, Reply: replySPFFail, Doc: "SPF softfail"},
		{Name: FindingSPFNeutral, Action: policy.Accept, Reply: replySPFFail, Doc: "SPF neutral"},
		{Name: FindingSPFNone, Action: policy.Accept, Reply: replySPFFail, Doc: "no SPF record"},
		{Name: FindingSPFPermError, Action: policy.Accept, Reply: replySPFError, Doc: "SPF record invalid"},
	},
}

// DKIMSpec declares dkim (verification of the customer's signatures).
var DKIMSpec = policy.Spec{
	Name: DKIMName,
	Findings: []policy.FindingSpec{
		{Name: FindingDKIMFail, Action: policy.Accept, Reply: replyDKIMFail, Doc: "a signature does not verify"},
		{Name: FindingDKIMPermError, Action: policy.Accept, Reply: replyDKIMFail, Doc: "a signature cannot be verified"},
	},
}

// DMARCSpec declares dmarc. It reads the SPF and DKIM results (RFC 7489
// §4.2), so spf and dkim must run before it.
var DMARCSpec = policy.Spec{
	Name:  DMARCName,
	Needs: []string{SPFName, DKIMName},
	Findings: []policy.FindingSpec{
		{Name: FindingDMARCReject, Action: policy.Reject, Reply: replyDMARCPolicy, Doc: "p=reject and no aligned pass"},
		{Name: FindingDMARCQuarantine, Action: policy.Reject, Reply: replyDMARCPolicy, Doc: "p=quarantine and no aligned pass"},
		{Name: FindingDMARCUnaligned, Action: policy.Accept, Reply: replyDMARCRequire, Doc: "p=none and no aligned pass (reject with require_alignment)"},
		{Name: FindingDMARCNoRecord, Action: policy.Accept, Reply: replyDMARCRequire, Doc: "no DMARC record and no aligned pass (reject with require_alignment)"},
	},
}

// SignSpec declares dkim_sign. It reports nothing; it signs the header
// section, so every check that adds headers must run before it.
var SignSpec = policy.Spec{
	Name:         SignName,
	AddsHeaders:  true,
	SignsHeaders: true,
}
