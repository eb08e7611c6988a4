package content

import (
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Family is the content family as the gateway plugs it in: malware
// (clamd) and spam_score (rspamd), at end of message, each fed the body
// as it streams. It owns the content: section (config.go); an engine
// without an address leaves its check inert.
var Family = setup.Family{
	Name:     "content",
	Sections: []config.SectionSpec{Section},
	Checks: []setup.Check{
		{Spec: MalwareSpec, New: func(d *setup.Deps) (policy.Check, error) {
			c, err := ConfigOf(d.Config)
			if err != nil {
				return nil, err
			}
			return NewMalware(c.Clamd, d.Clock, d.Logger), nil
		}},
		{Spec: ListedSpec, New: func(d *setup.Deps) (policy.Check, error) {
			c, err := ConfigOf(d.Config)
			if err != nil {
				return nil, err
			}
			return NewListedURL(c.URLs, d.Resolver, d.Logger)
		}},
		{Spec: SpamSpec, New: func(d *setup.Deps) (policy.Check, error) {
			c, err := ConfigOf(d.Config)
			if err != nil {
				return nil, err
			}
			return NewSpamScore(c, d.Clock, d.Logger), nil
		}},
	},
}

// Each check of the family starts its engine work ahead of its turn at
// end of message.
var (
	_ policy.EOMStarter = (*Malware)(nil)
	_ policy.EOMStarter = (*ListedURL)(nil)
	_ policy.EOMStarter = (*SpamScore)(nil)
	_ policy.Finisher   = (*ListedURL)(nil)
)
