package gateway

import (
	"fmt"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"

	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
)

// The sender-authentication checks (package auth): SPF at MAIL FROM, then
// at end of message DKIM verification and the DMARC decision, and, last in
// the chain, DKIM signing of what is accepted. The signer plans its
// signature when the headers are complete, so dkim and dmarc (and
// bulk_mail through auth.DKIMAligned) count it as an aligned pass. They
// share their results through the typed policy.Txn.Auth.
var authFamily = setup.Family{Name: "auth", Checks: []setup.Check{
	{Spec: auth.SPFSpec, New: func(d *Deps) (policy.Check, error) {
		r, err := authResolver(d)
		if err != nil {
			return nil, err
		}
		egress := config.Addrs(d.Config.Provider.EgressIPs)
		if len(egress) == 0 && d.Logger != nil {
			d.Logger.Warn("spf: provider.egress_ips is empty, SPF is not evaluated (and cannot make DMARC pass)")
		}
		return auth.NewSPF(egress, r, d.Config.DNS.Timeout).WithHelo(d.Config.Provider.EgressHelo()), nil
	}},
	{Spec: auth.DKIMSpec, New: func(d *Deps) (policy.Check, error) {
		r, err := authResolver(d)
		if err != nil {
			return nil, err
		}
		return auth.NewDKIM(r, d.Config.Auth.DKIM.MaxSignatures, d.Config.DNS.Timeout), nil
	}},
	{Spec: auth.DMARCSpec, New: func(d *Deps) (policy.Check, error) {
		r, err := authResolver(d)
		if err != nil {
			return nil, err
		}
		require := map[string]bool{}
		for _, c := range d.Config.Customers {
			if c.RequireAlignment != nil {
				require[c.ID] = *c.RequireAlignment
			}
		}
		return auth.NewDMARC(r, d.Config.DNS.Timeout, require, d.Config.Auth.DMARC.RequireAlignment), nil
	}},
	{Spec: auth.SignSpec, New: func(d *Deps) (policy.Check, error) {
		keys, err := auth.LoadKeys(d.Config)
		if err != nil {
			return nil, err
		}
		s := d.Config.Auth.Signing
		return auth.NewSigner(keys, auth.SignOptions{Headers: s.Headers, Oversign: s.Oversign, Expiration: s.Expiration}, d.Clock), nil
	}},
}}

// authResolver returns the shared resolver of d. Without one (a caller
// that did not open it), a resolver of its own is made from the dns
// section, so that the checks still honour dns.servers.
func authResolver(d *Deps) (resolver.Resolver, error) {
	if d.Resolver != nil {
		return d.Resolver, nil
	}
	c, err := resolver.New(d.Config.DNS, d.Clock)
	if err != nil {
		return nil, fmt.Errorf("dns: %v", err)
	}
	return c, nil
}
