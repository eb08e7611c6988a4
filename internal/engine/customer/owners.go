package customer

import (
	"fmt"
	"net/netip"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// owners maps every login (and login pattern) and every network of the
// effective directory to the customer that claims it: the cross-customer
// rules of the config (a login, a network belongs to one customer) are
// then checked for a changed customer alone, in time proportional to its
// own logins and networks, not to the directory's.
type owners struct {
	logins map[string]string
	nets   map[netip.Prefix]string
}

// ownersOf indexes a customer list (the first claimant keeps an entry).
func ownersOf(list []config.Customer) *owners {
	n := 0
	for i := range list {
		n += len(list[i].Logins)
	}
	o := &owners{logins: make(map[string]string, n), nets: make(map[netip.Prefix]string, len(list))}
	for i := range list {
		o.add(list[i])
	}
	return o
}

func (o *owners) add(c config.Customer) {
	for _, l := range c.Logins {
		if _, ok := o.logins[l]; !ok {
			o.logins[l] = c.ID
		}
	}
	for _, n := range c.Networks {
		if p, err := config.ParsePrefix(n); err == nil {
			if _, ok := o.nets[p]; !ok {
				o.nets[p] = c.ID
			}
		}
	}
}

func (o *owners) remove(c config.Customer) {
	for _, l := range c.Logins {
		if o.logins[l] == c.ID {
			delete(o.logins, l)
		}
	}
	for _, n := range c.Networks {
		if p, err := config.ParsePrefix(n); err == nil && o.nets[p] == c.ID {
			delete(o.nets, p)
		}
	}
}

// conflicts returns the errors of c claiming a login or network another
// customer has, customers in skip excepted (they are being replaced and
// were checked against each other). The messages are the config file's.
func (o *owners) conflicts(c config.Customer, skip map[string]bool) ValidationError {
	return o.conflictsExcept(c, func(id string) bool { return skip[id] })
}

// conflictsExcept is conflicts with the customers to skip given by a
// function.
func (o *owners) conflictsExcept(c config.Customer, skip func(id string) bool) ValidationError {
	var out ValidationError
	for j, l := range c.Logins {
		if id, ok := o.logins[l]; ok && id != c.ID && !skip(id) {
			out = append(out, FieldError{Customer: c.ID, Field: fmt.Sprintf("logins[%d]", j), Message: fmt.Sprintf("login %q also belongs to customer %q", l, id)})
		}
	}
	for j, n := range c.Networks {
		p, err := config.ParsePrefix(n)
		if err != nil {
			continue
		}
		if id, ok := o.nets[p]; ok && id != c.ID && !skip(id) {
			out = append(out, FieldError{Customer: c.ID, Field: fmt.Sprintf("networks[%d]", j), Message: fmt.Sprintf("network %s is already customer %q's", p, id)})
		}
	}
	return out
}
