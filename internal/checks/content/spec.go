// Package content is the content check family: what customers send,
// judged by the scanning engines providers already run. malware streams
// each message to clamd (INSTREAM) as its body arrives; spam_score streams
// it to rspamd's /checkv2 and maps the score to per-customer thresholds.
// Each engine is off until its address is configured (content: section),
// and then costs nothing for a customer whose check is disabled: no body
// writer, no connection.
package content

import "github.com/aupguard/aupguard/internal/engine/policy"

// Check and finding names.
const (
	MalwareCheck = "malware"
	// FindingMalware: clamd found a signature in the message.
	FindingMalware = "malware_found"
	// FindingNotScanned: the message is above clamd's StreamMaxLength and
	// was not scanned whole; it is not called clean.
	FindingNotScanned = "malware_not_scanned"

	ListedCheck = "listed_url"
	// FindingListedURL: a link's domain (or IP) is on a URI blocklist.
	FindingListedURL = "listed_url"

	SpamCheck = "spam_score"
	// FindingSpamHold: rspamd's score is at or above the hold threshold.
	FindingSpamHold = "spam_score_hold"
	// FindingSpamReject: rspamd's score is at or above the reject threshold.
	FindingSpamReject = "spam_score_reject"
)

// Replies of the family. The malware refusal names the signature (built
// per message by malwareReply); the log carries the detail.
var (
	replyMalware = policy.MustReply(550, "5.7.1", "Message refused: malware detected")
	replySpam    = policy.MustReply(550, "5.7.1", "Message refused: content looks like spam")
	replyListed  = policy.MustReply(550, "5.7.1", "Message refused: links to a listed domain")
)

// MalwareSpec declares malware.
var MalwareSpec = policy.Spec{
	Name: MalwareCheck,
	Findings: []policy.FindingSpec{
		{Name: FindingMalware, Action: policy.Reject, Reply: replyMalware, Doc: "clamd found a signature in the message (the reply names it)"},
		{Name: FindingNotScanned, Action: policy.Quarantine, Doc: "the message is larger than clamd's StreamMaxLength and was not scanned: held in Postfix's hold queue, not called clean"},
	},
}

// SpamSpec declares spam_score.
var SpamSpec = policy.Spec{
	Name: SpamCheck,
	Findings: []policy.FindingSpec{
		{Name: FindingSpamHold, Action: policy.Quarantine, Doc: "rspamd's score is at or above the customer's hold threshold (default 6): held in Postfix's hold queue"},
		{Name: FindingSpamReject, Action: policy.Reject, Reply: replySpam, Doc: "rspamd's score is at or above the customer's reject threshold (default 15)"},
	},
}

// ListedSpec declares listed_url.
var ListedSpec = policy.Spec{
	Name: ListedCheck,
	Findings: []policy.FindingSpec{
		{Name: FindingListedURL, Action: policy.Reject, Reply: replyListed, Doc: "a link's registrable domain (or IP) is on a configured URI blocklist (the reply names it)"},
	},
}
