package optout

import "github.com/aupguard/aupguard/internal/engine/policy"

// The opt-out checks declare themselves here: names, findings with their
// default actions and replies, and their place in the chain.

// SuppressionSpec declares optout_suppression.
var SuppressionSpec = policy.Spec{
	Name: SuppressionName,
	Findings: []policy.FindingSpec{
		{Name: FindingOptedOut, Action: policy.Reject, Reply: ReplyOptedOut, Doc: "recipient on the customer's suppression list", Tally: policy.TallyOptedOut},
		{Name: FindingSuppressed, Action: policy.Reject, Reply: ReplySuppressed, Doc: "recipient on the provider-wide suppression list", Tally: policy.TallySuppressed},
		{Name: FindingEscalation, Action: policy.Accept, Doc: "too many sends to opted-out recipients: customer flagged", Tally: policy.TallyEscalated},
	},
}

// BulkSpec declares bulk_mail. It reads DKIM alignment from the dkim
// check and the gateway's own signature when they are in the chain.
var BulkSpec = policy.Spec{
	Name: BulkName,
	Findings: []policy.FindingSpec{
		{Name: FindingMissingOneClick, Action: policy.Reject, Reply: policy.MustReply(550, "5.7.1", "Bulk mail needs one-click unsubscribe (RFC 8058)"), Doc: "bulk mail without RFC 8058 one-click unsubscribe"},
		{Name: FindingNotAligned, Action: policy.Reject, Reply: ReplyNotAligned, Doc: "bulk mail without an aligned DKIM signature"},
		{Name: FindingDKIMUnknown, Action: policy.Accept, Doc: "DKIM alignment of bulk mail cannot be told"},
		{Name: FindingFlagged, Action: policy.Accept, Reply: ReplyFlagged, Doc: "bulk mail of a flagged customer"},
		{Name: FindingRateWarn, Action: policy.Accept, Doc: "complaint rate above the warning level"},
		{Name: FindingRateHigh, Action: policy.Defer, Reply: ReplyRateHigh, Doc: "complaint rate above the action level"},
	},
}

// StampSpec declares feedback_stamp, which adds the customer stamp and
// Feedback-ID to accepted mail.
var StampSpec = policy.Spec{Name: StampName, AddsHeaders: true,
	Findings: []policy.FindingSpec{
		{Name: FindingFeedbackIDReplaced, Action: policy.Accept, Doc: "the client's Feedback-ID or X-AUP-Customer field was removed (only the gateway writes them)"},
		{Name: FindingForeignUnsubscribe, Action: policy.Reject, Reply: ReplyForeignUnsubscribe, Doc: "List-Unsubscribe carries a gateway unsubscribe link not issued for this customer"},
	},
}

// UnsubscribeSpec declares unsubscribe_link, which adds the one-click
// headers to the messages bulk_mail marked for it.
var UnsubscribeSpec = policy.Spec{Name: UnsubscribeName, AddsHeaders: true, Needs: []string{BulkName}}
