package gateway

import (
	"github.com/aupguard/aupguard/headers"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/ratelimit"
)

// families are the check families the gateway knows, one line each. Each
// declares its checks and owns its config sections (package setup); the
// order the checks run in is chain.list's.
var families = []setup.Family{
	headers.Family,
	ratelimit.Family,
	authFamily,
	optoutFamily,
	reputationFamily,
}
