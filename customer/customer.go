// Package customer attributes a message to one of the provider's customers:
// by SASL login first, then by client address. A client that matches no
// customer is unidentified, and its mail is refused (no open relay).
package customer

import (
	"fmt"
	"net/netip"
	"path"
	"sort"

	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/mailaddr"
	"github.com/aupguard/aupguard/policy"
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
	globs    []glob
	networks []network // longest prefix first
}

type glob struct {
	pattern string
	c       *policy.Customer
}

type network struct {
	p netip.Prefix
	c *policy.Customer
}

// NewDirectory builds the directory from a validated config.
func NewDirectory(cfg *config.Config) (*Directory, error) {
	d := &Directory{byID: map[string]*policy.Customer{}, exact: map[string]*policy.Customer{}}
	for i := range cfg.Customers {
		cc := &cfg.Customers[i]
		c, err := build(cc)
		if err != nil {
			return nil, fmt.Errorf("customer %q: %w", cc.ID, err)
		}
		d.all = append(d.all, c)
		d.byID[c.ID] = c
		for _, l := range cc.Logins {
			if hasMeta(l) {
				d.globs = append(d.globs, glob{l, c})
			} else {
				d.exact[l] = c
			}
		}
		for _, n := range cc.Networks {
			p, err := config.ParsePrefix(n)
			if err != nil {
				return nil, err
			}
			d.networks = append(d.networks, network{p, c})
		}
	}
	sort.SliceStable(d.networks, func(i, j int) bool { return d.networks[i].p.Bits() > d.networks[j].p.Bits() })
	return d, nil
}

func hasMeta(s string) bool {
	for _, r := range s {
		if r == '*' || r == '?' || r == '[' {
			return true
		}
	}
	return false
}

func build(cc *config.Customer) (*policy.Customer, error) {
	c := &policy.Customer{ID: cc.ID, Name: cc.Name, AbuseContact: cc.AbuseContact, Overrides: map[string]policy.CustomerOverride{}}
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
	for name, o := range cc.Checks {
		var ov policy.CustomerOverride
		ov.Enabled = o.Enabled
		if o.Action != "" {
			a, err := policy.ParseAction(o.Action)
			if err != nil {
				return nil, err
			}
			ov.Action = &a
		}
		for f, s := range o.Findings {
			a, err := policy.ParseAction(s)
			if err != nil {
				return nil, err
			}
			if ov.Findings == nil {
				ov.Findings = map[string]policy.Action{}
			}
			ov.Findings[f] = a
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
		for _, g := range d.globs {
			if ok, _ := path.Match(g.pattern, login); ok {
				return g.c, ByLogin
			}
		}
	}
	client = client.Unmap()
	for _, n := range d.networks {
		if n.p.Contains(client) {
			return n.c, ByNetwork
		}
	}
	return nil, ""
}

// ByID returns the customer with the given id.
func (d *Directory) ByID(id string) (*policy.Customer, bool) {
	c, ok := d.byID[id]
	return c, ok
}

// All returns every customer in config order.
func (d *Directory) All() []*policy.Customer { return d.all }
