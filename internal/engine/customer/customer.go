// Package customer attributes a message to one of the provider's customers:
// by SASL login first, then by client address. A client that matches no
// customer is unidentified, and its mail is refused (no open relay).
package customer

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
)

// How a message was attributed.
const (
	ByLogin   = "login"
	ByNetwork = "network"
)

// Directory finds the customer behind a login or client address.
type Directory struct {
	all      []*policy.Customer
	byID     map[string]*policy.Customer
	exact    map[string]*policy.Customer
	globs    globIndex
	networks prefixIndex
	// defs are the customers' definitions (in the config the directory
	// was built from) and ord their order keys, for Update.
	defs map[string]*config.Customer
	ord  map[string]int64
}

// NewDirectory builds the directory from a validated config.
func NewDirectory(cfg *config.Config) (*Directory, error) {
	n := 0
	for i := range cfg.Customers {
		n += len(cfg.Customers[i].Logins)
	}
	d := &Directory{byID: make(map[string]*policy.Customer, len(cfg.Customers)), exact: make(map[string]*policy.Customer, n),
		defs: make(map[string]*config.Customer, len(cfg.Customers)), ord: make(map[string]int64, len(cfg.Customers))}
	for i := range cfg.Customers {
		cc := &cfg.Customers[i]
		c, err := build(cc)
		if err != nil {
			return nil, fmt.Errorf("customer %q: %w", cc.ID, err)
		}
		order := int64(i) * ordGap
		d.all = append(d.all, c)
		d.byID[c.ID] = c
		d.defs[c.ID], d.ord[c.ID] = cc, order
		for _, l := range cc.Logins {
			if hasMeta(l) {
				d.globs.add(glob{pattern: l, order: order, c: c})
			} else if _, dup := d.exact[l]; !dup {
				d.exact[l] = c
			}
		}
		for _, p := range c.Networks {
			d.networks.add(p, c)
		}
	}
	d.globs.finish()
	return d, nil
}

// hasMeta reports whether a login is a glob (path.Match syntax). A login
// with none of * ? [ is matched exactly, backslashes included.
func hasMeta(s string) bool {
	return strings.ContainsAny(s, "*?[")
}

func build(cc *config.Customer) (*policy.Customer, error) {
	c := &policy.Customer{ID: cc.ID, Name: cc.Name, AbuseContact: cc.AbuseContact, Reseller: cc.Reseller, Settings: cc.Settings}
	if cc.Mode == "monitor" {
		c.Mode = policy.Monitor
	}
	for _, d := range cc.Domains {
		p, err := mailaddr.ParsePattern(d)
		if err != nil {
			return nil, err
		}
		c.Domains = append(c.Domains, p)
	}
	for _, n := range cc.Networks {
		p, err := config.ParsePrefix(n)
		if err != nil {
			return nil, err
		}
		c.Networks = append(c.Networks, p)
	}
	for name, o := range cc.Checks {
		var ov policy.CustomerOverride
		ov.Enabled = o.Enabled
		if a, ok := o.Action.Get(); ok {
			ov.Action = &a
		}
		for f, fa := range o.Findings {
			a, ok := fa.Get()
			if !ok {
				continue
			}
			if ov.Findings == nil {
				ov.Findings = map[string]policy.Action{}
			}
			ov.Findings[f] = a
		}
		if c.Overrides == nil {
			c.Overrides = make(map[string]policy.CustomerOverride, len(cc.Checks))
		}
		c.Overrides[name] = ov
	}
	return c, nil
}

// Identify returns the customer for a SASL login (when not empty) or else
// for the client address, and how it was found. A login that matches no
// customer falls back to the client address. Nil means unidentified.
func (d *Directory) Identify(login string, client netip.Addr) (*policy.Customer, string) {
	if login != "" {
		if c, ok := d.exact[login]; ok {
			return c, ByLogin
		}
		if c, ok := d.globs.match(login); ok {
			return c, ByLogin
		}
	}
	if c := d.networks.lookup(client); c != nil {
		return c, ByNetwork
	}
	return nil, ""
}

// ByID returns the customer with the given id.
func (d *Directory) ByID(id string) (*policy.Customer, bool) {
	c, ok := d.byID[id]
	return c, ok
}

// Def returns the definition a customer of the directory was built from.
func (d *Directory) Def(id string) (*config.Customer, bool) {
	c, ok := d.defs[id]
	return c, ok
}

// All returns every customer in config order.
func (d *Directory) All() []*policy.Customer { return d.all }
