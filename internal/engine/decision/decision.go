// Package decision is the record of one gateway decision and the
// interfaces of those who receive it. The engine (package gateway) makes
// decisions; the events store, the metrics and the reports read them, and
// import only this small package, not the engine.
package decision

import (
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Stages at which the gateway decides and replies.
const (
	StageMail = "mail"
	StageRcpt = "rcpt"
	StageEOM  = "eom"
)

// Decision is the record of one decision: every refusal at MAIL or RCPT, and
// every message's end-of-message verdict (including accepts, and monitor
// mode's would-be decisions). It is what the log line, the events store,
// the metrics and the reports are made of.
type Decision struct {
	Time    time.Time
	Stage   string
	QueueID string
	// Ref is the reference id in the client-facing reply text.
	Ref      string
	Customer string // "" when unidentified
	// By is how the customer was identified: "login" or "network".
	By string
	// Login is the SASL login, or the Unix login of local submission, the
	// message was sent with ("" for a client known by its network alone).
	Login        string
	Client       string
	SenderDomain string
	// Rcpts is the number of accepted recipients (at EOM) or 1 (at RCPT).
	Rcpts int
	// RcptHashes are keyed hashes of the recipients concerned (the one
	// refused at RCPT; all accepted ones at EOM).
	RcptHashes []string
	// RcptPlain holds the plain addresses, only when the config allows it.
	RcptPlain []string
	Size      int64
	// Action is the verdict (what would be done, in monitor mode).
	Action policy.Action
	// Effective is what was done: Accept for a monitor-mode refusal.
	Effective policy.Action
	Check     string
	Finding   string
	Detail    string
	Code      int
	Enhanced  string
	Mode      string
	// Results are every non-ignored finding of the stage.
	Results  []policy.Result
	Duration time.Duration
}

// Observer receives every decision. It is called on the milter's goroutine
// and must not block: buffer, and count what is dropped.
type Observer interface {
	Observe(d *Decision)
}

// StageObserver, when an Observer also implements it, is told the time
// spent deciding at each stage (for latency histograms).
type StageObserver interface {
	ObserveStage(stage string, d time.Duration)
}
