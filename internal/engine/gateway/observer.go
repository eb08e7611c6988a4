package gateway

import "github.com/aupguard/aupguard/internal/engine/decision"

// The decision record and its observers are package decision's, so that
// events and metrics need not import the engine.
type (
	// Decision is the record of one decision.
	Decision = decision.Decision
	// Observer receives every decision.
	Observer = decision.Observer
	// StageObserver is told the time spent deciding at each stage.
	StageObserver = decision.StageObserver
)

// Stages at which the gateway decides and replies.
const (
	StageMail = decision.StageMail
	StageRcpt = decision.StageRcpt
	StageEOM  = decision.StageEOM
)
