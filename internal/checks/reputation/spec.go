package reputation

import "github.com/aupguard/aupguard/internal/engine/policy"

// Spec declares bounce_rate: its findings and what it reads. Its
// defer_bulk outcome uses bulk_mail's judgement of the message, so it runs
// after bulk_mail.
var Spec = policy.Spec{
	Name: CheckName,
	Findings: []policy.FindingSpec{
		{Name: FindingWarn, Action: policy.Accept, Doc: "hard-bounce rate above the warning level"},
		{Name: FindingHigh, Action: policy.Defer, Reply: ReplyBulkSuspended, Doc: "hard-bounce rate above the action level (outcome per customer: report, defer_bulk, defer_all)"},
	},
	Needs: []string{"bulk_mail"},
}
