package ratelimit

import "github.com/aupguard/aupguard/internal/engine/policy"

// The volume checks declare themselves here: names and findings with their
// default actions and replies.

// SizeSpec declares message_size.
var SizeSpec = policy.Spec{
	Name: SizeName,
	Findings: []policy.FindingSpec{
		{Name: FindingTooLarge, Action: policy.Reject, Reply: replyTooLarge, Doc: "message larger than message_size", Tally: policy.TallyLimit},
	},
}

// RcptCapSpec declares recipients_per_message.
var RcptCapSpec = policy.Spec{
	Name: RcptCapName,
	Findings: []policy.FindingSpec{
		{Name: FindingTooManyRcpts, Action: policy.Defer, Reply: replyTooManyRcpts, Doc: "one recipient more than recipients_per_message", Tally: policy.TallyLimit},
	},
}

// RateSpec declares rate_limit.
var RateSpec = policy.Spec{
	Name: RateName,
	Findings: []policy.FindingSpec{
		{Name: FindingRate, Action: policy.Defer, Reply: policy.MustReply(451, "4.7.1", "Rate limit reached"), Doc: "a smooth rate is exhausted", Tally: policy.TallyLimit},
		{Name: FindingQuota, Action: policy.Defer, Reply: policy.MustReply(451, "4.7.1", "Daily quota reached"), Doc: "a daily quota is reached", Tally: policy.TallyLimit},
		{Name: FindingRcptFrequency, Action: policy.Defer, Reply: policy.MustReply(450, "4.7.1", "Too many messages to this recipient"), Doc: "too many messages to one recipient", Tally: policy.TallyLimit},
		{Name: FindingSpike, Action: policy.Defer, Reply: replySpike, Doc: "volume far above the customer's baseline", Tally: policy.TallySpike},
	},
}
