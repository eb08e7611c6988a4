// Package plugins is the one list of the gateway's families, in the way
// of CoreDNS's zplugin.go: the only file that names them. Importing it
// (cmd/aupguard does, and the tests that run the whole gateway) registers
// them with package setup; nothing in the core imports a family.
package plugins

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

// Families are the check families the gateway runs, one line each. Each
// declares its checks, config sections, commands and runtime parts
// (package setup); the order the checks run in is chain.list's
// (internal/engine/gateway/chain.list).
var Families = []setup.Family{
	headers.Family,
	ratelimit.Family,
	auth.Family,
	optout.Family,
	reputation.Family,
	content.Family,
	standing.Family,
}

func init() { setup.Register(Families...) }
