package auth

import (
	"fmt"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/resolver"
)

// Family is the sender-authentication family as the gateway plugs it in:
// SPF at MAIL FROM, then at end of message DKIM verification and the DMARC
// decision, and, last in the chain, DKIM signing of what is accepted. The
// signer plans its signature when the headers are complete, so dkim and
// dmarc (and bulk_mail through DKIMAligned) count it as an aligned pass.
// They share their results through the typed output Results. It owns the
// auth: section of the config and the customers' require_alignment and
// dkim keys (config.go).
var Family = setup.Family{
	Name:     "auth",
	Sections: []config.SectionSpec{Section},
	Commands: commands,
	Build:    "RSA signing: " + RSABackend,
	Customer: &CustomerSection,
	Checks: []setup.Check{
		{Spec: SPFSpec, New: func(d *setup.Deps) (policy.Check, error) {
			r, err := resolverOf(d)
			if err != nil {
				return nil, err
			}
			egress := config.Addrs(d.Config.Provider.EgressIPs)
			if len(egress) == 0 && d.Logger != nil {
				d.Logger.Warn("spf: provider.egress_ips is empty, SPF is not evaluated (and cannot make DMARC pass)")
			}
			return NewSPF(egress, r, d.Config.DNS.Timeout).WithHelo(d.Config.Provider.EgressHelo()), nil
		}},
		{Spec: DKIMSpec, New: func(d *setup.Deps) (policy.Check, error) {
			a, err := ConfigOf(d.Config)
			if err != nil {
				return nil, err
			}
			r, err := resolverOf(d)
			if err != nil {
				return nil, err
			}
			return NewDKIM(r, a.DKIM.MaxSignatures, d.Config.DNS.Timeout), nil
		}},
		{Spec: DMARCSpec, New: func(d *setup.Deps) (policy.Check, error) {
			a, err := ConfigOf(d.Config)
			if err != nil {
				return nil, err
			}
			r, err := resolverOf(d)
			if err != nil {
				return nil, err
			}
			return NewDMARC(r, d.Config.DNS.Timeout, nil, a.DMARC.RequireAlignment), nil
		}},
		{Spec: SignSpec, New: func(d *setup.Deps) (policy.Check, error) {
			a, err := ConfigOf(d.Config)
			if err != nil {
				return nil, err
			}
			var ro *Rotation
			if rotated(d.Config) {
				r, err := resolverOf(d)
				if err != nil {
					return nil, err
				}
				var get func(string, func() any) any
				if d.Shared != nil {
					get = d.Shared.Get
				}
				ro = rotationOf(get, a.DKIM.Rotation, r, d.Config.DNS.Timeout, d.Logger, d.Clock)
			}
			keys, err := a.KeysWith(d.Config.Customers, ro)
			if err != nil {
				return nil, err
			}
			return NewSigner(keys, SignOptions(a.Signing), d.Clock), nil
		}},
	},
}

// rotated reports whether a customer of cfg has a rotated signing key.
func rotated(cfg *config.Config) bool {
	for _, c := range cfg.Customers {
		for _, k := range c.DKIM {
			if k.Rotated {
				return true
			}
		}
	}
	return false
}

// resolverOf returns the shared resolver of d. Without one (a caller that
// did not open it), a resolver of its own is made from the dns section, so
// that the checks still honour dns.servers.
func resolverOf(d *setup.Deps) (resolver.Resolver, error) {
	if d.Resolver != nil {
		return d.Resolver, nil
	}
	c, err := resolver.New(d.Config.DNS, d.Clock)
	if err != nil {
		return nil, fmt.Errorf("dns: %v", err)
	}
	return c, nil
}
