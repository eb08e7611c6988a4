// Package standing is the stop switch of the gateway: a stop names a
// scope (reseller, customer or login) and an id, and what to do with its
// mail (hold in Postfix's HOLD queue, defer with 451 4.7.1, reject with
// 550 5.7.1), with a reason, an optional end, its source (manual, or an
// automatic flag: content findings, opt-out escalation, bounce rate), who
// set it and when. The standing check applies the stops at MAIL FROM; the
// stops live in the shared store (memory or Redis), so that a stop set on
// one gateway takes effect on every gateway of the store within
// standing.refresh. The content flag (flags.go) counts content findings
// per customer and login and sets a stop at the configured number.
package standing

import "github.com/aupguard/aupguard/internal/engine/policy"

// Check and finding names.
const (
	CheckName = "standing"
	// FindingHold: the sender is stopped with action hold; its mail is
	// accepted into Postfix's HOLD queue.
	FindingHold = "stopped_hold"
	// FindingDefer: the sender is stopped with action defer (451 4.7.1).
	FindingDefer = "stopped_defer"
	// FindingReject: the sender is stopped with action reject (550 5.7.1).
	FindingReject = "stopped_reject"
)

// Replies without a reason (a reason the customer can read is added per
// stop, replyFor). RFC 3463 §3.8: X.7.1 delivery not authorized.
var (
	replyDefer  = policy.MustReply(451, "4.7.1", "Mail from this sender is on hold by the provider")
	replyReject = policy.MustReply(550, "5.7.1", "Mail from this sender is suspended by the provider")
)

// Spec declares the standing check.
var Spec = policy.Spec{
	Name: CheckName,
	Findings: []policy.FindingSpec{
		{Name: FindingHold, Action: policy.Quarantine, Doc: "the reseller, customer or login is stopped with action hold: its mail is accepted into Postfix's HOLD queue"},
		{Name: FindingDefer, Action: policy.Defer, Reply: replyDefer, Doc: "the reseller, customer or login is stopped with action defer (the reply carries the stop's reason)"},
		{Name: FindingReject, Action: policy.Reject, Reply: replyReject, Doc: "the reseller, customer or login is stopped with action reject (the reply carries the stop's reason)"},
	},
}
