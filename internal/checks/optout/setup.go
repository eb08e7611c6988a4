package optout

import (
	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Family is the opt-out family as the gateway plugs it in: suppression at
// RCPT (refusing recipients who opted out, counting toward escalation),
// the bulk-mail rules at end of message, and the headers added to accepted
// mail (the customer stamp and Feedback-ID, then one-click unsubscribe),
// which come before DKIM signing (dkim_sign declares that it signs
// headers, and the config refuses a chain that adds headers after it). It
// owns the optout: and bulk: sections of the config (config.go).
var Family = setup.Family{
	Name:          "optout",
	Sections:      []config.SectionSpec{Section, BulkSection},
	Customer:      &CustomerSection,
	Setup:         setupRuntime,
	RecipientForm: recipientForm,
	Commands:      commands,
	Checks: []setup.Check{
		{Spec: SuppressionSpec, New: func(d *setup.Deps) (policy.Check, error) {
			svc, err := service(d)
			if err != nil {
				return nil, err
			}
			return NewSuppression(svc), nil
		}},
		{Spec: BulkSpec, New: func(d *setup.Deps) (policy.Check, error) {
			svc, err := service(d)
			if err != nil {
				return nil, err
			}
			// DKIM alignment comes from the typed auth results on the
			// transaction (dkim, dmarc and the gateway's own signature).
			return NewBulk(svc, auth.DKIMAligned), nil
		}},
		{Spec: StampSpec, New: func(d *setup.Deps) (policy.Check, error) {
			svc, err := service(d)
			if err != nil {
				return nil, err
			}
			return NewStamper(svc), nil
		}},
		{Spec: UnsubscribeSpec, New: func(d *setup.Deps) (policy.Check, error) {
			svc, err := service(d)
			if err != nil {
				return nil, err
			}
			return NewUnsubscriber(svc), nil
		}},
	},
}

// service opens the service a check of the family works through.
func service(d *setup.Deps) (*Service, error) {
	svc, err := NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger)
	if err != nil {
		return nil, err
	}
	if live := d.Live; live != nil {
		svc.Known = func(id string) bool { _, ok := live.ByID(id); return ok }
	}
	return svc, nil
}
