package gateway

import (
	"github.com/aupguard/aupguard/headers"
	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/checks/content"
	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/checks/standing"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/ratelimit"
)

// families are the check families the gateway knows, one line each. Each
// declares its checks and owns its config sections (package setup); the
// order the checks run in is chain.list's.
var families = []setup.Family{
	headers.Family,
	ratelimit.Family,
	auth.Family,
	optout.Family,
	reputation.Family,
	content.Family,
	standing.Family,
}
