package gateway

import (
	"github.com/aupguard/aupguard/headers"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// The header and sender-identity checks (package headers). header_syntax
// runs first: a malformed header section is refused before anything tries
// to make sense of it; then who the message claims to be from; then forged
// trace, authentication and origin fields.
func init() {
	register(headers.SyntaxSpec, func(d *Deps) (policy.Check, error) {
		s, err := headers.SettingsFromConfig(d.Config)
		if err != nil {
			return nil, err
		}
		return headers.NewSyntax(s), nil
	})
	register(headers.IdentitySpec, func(d *Deps) (policy.Check, error) {
		s, err := headers.SettingsFromConfig(d.Config)
		if err != nil {
			return nil, err
		}
		return headers.NewIdentity(s), nil
	})
	register(headers.ForgerySpec, func(d *Deps) (policy.Check, error) {
		s, err := headers.SettingsFromConfig(d.Config)
		if err != nil {
			return nil, err
		}
		return headers.NewForgery(s), nil
	})
}
