package reputation

import (
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Family is the reputation family as the gateway plugs it in:
// bounce_rate judges the customer's hard-bounce rate, read back from
// Postfix's delivery log, at end of message, and remembers accepted
// messages' queue ids. It runs after bulk_mail, whose bulk judgement its
// defer_bulk outcome uses (Spec declares it). It owns the reputation:
// section of the config (config.go); the delivery-log reader and the
// blocklist watcher run beside the milter (runtime.go).
var Family = setup.Family{
	Name:     "reputation",
	Sections: []config.SectionSpec{Section},
	Setup:    setupRuntime,
	Checks: []setup.Check{
		{Spec: Spec, New: func(d *setup.Deps) (policy.Check, error) {
			svc, err := service(d)
			if err != nil {
				return nil, err
			}
			return NewCheck(svc), nil
		}},
	},
}
