package headers

import (
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Family is the header and sender-identity family as the gateway plugs it
// in: header_syntax runs first (a malformed header section is refused
// before anything tries to make sense of it), then who the message claims
// to be from, then forged trace, authentication and origin fields. It owns
// the headers: section of the config (config.go).
var Family = setup.Family{
	Name:     "headers",
	Sections: []config.SectionSpec{Section},
	Checks: []setup.Check{
		{Spec: SyntaxSpec, New: func(d *setup.Deps) (policy.Check, error) {
			s, err := SettingsFromConfig(d.Config)
			if err != nil {
				return nil, err
			}
			return NewSyntax(s), nil
		}},
		{Spec: IdentitySpec, New: func(d *setup.Deps) (policy.Check, error) {
			s, err := SettingsFromConfig(d.Config)
			if err != nil {
				return nil, err
			}
			return NewIdentity(s), nil
		}},
		{Spec: ForgerySpec, New: func(d *setup.Deps) (policy.Check, error) {
			s, err := SettingsFromConfig(d.Config)
			if err != nil {
				return nil, err
			}
			return NewForgery(s), nil
		}},
	},
}
