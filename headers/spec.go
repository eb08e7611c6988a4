package headers

import "github.com/aupguard/aupguard/internal/engine/policy"

// The header checks declare themselves here: their names and every
// finding they can report, with the default action and reply.

func rejectForged(names ...string) []policy.FindingSpec {
	out := make([]policy.FindingSpec, len(names))
	for i, n := range names {
		out[i] = policy.FindingSpec{Name: n, Action: policy.Reject, Reply: ReplyForged}
	}
	return out
}

// SyntaxSpec declares header_syntax.
var SyntaxSpec = policy.Spec{
	Name: SyntaxName,
	Findings: rejectForged(FindingHeaderCount, FindingHeaderSize, FindingHeaderName, FindingHeaderNUL,
		FindingHeaderBareCR, FindingHeaderBareLF, FindingHeaderFolding, FindingHeaderControl,
		FindingHeaderLongLine, FindingEncodedWordCtrl),
}

// IdentitySpec declares sender_identity.
var IdentitySpec = policy.Spec{
	Name: IdentityName,
	Findings: func() []policy.FindingSpec {
		var out []policy.FindingSpec
		for _, n := range []string{FindingMailFromNoDomain, FindingMailFromNotOwned, FindingFromUnparsable,
			FindingFromNotOwned, FindingSenderMissing, FindingSenderUnparsable, FindingSenderNotOwned,
			FindingDisplayNameImperson} {
			out = append(out, policy.FindingSpec{Name: n, Action: policy.Reject, Reply: ReplySender})
		}
		return out
	}(),
}

// ForgerySpec declares header_forgery; each duplicated singleton field of
// RFC 5322 §3.6 has its own finding (see Singletons).
var ForgerySpec = policy.Spec{
	Name: ForgeryName,
	Findings: func() []policy.FindingSpec {
		names := []string{FindingDateMissing, FindingFromMissing, FindingReceivedForged, FindingAuthResForged,
			FindingARCAuthResForged, FindingReturnPath, FindingOriginForeign, FindingOriginProvider, FindingOriginInvalid}
		for _, s := range Singletons {
			names = append(names, s.Finding)
		}
		return rejectForged(names...)
	}(),
}
