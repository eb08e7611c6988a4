package customer

import (
	"fmt"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// owners maps every login (and login pattern) of the effective directory
// to the customer that claims it, and indexes every customer's networks
// and domains (config.Claims): the cross-customer rules of the config (a
// login belongs to one customer; networks and domains do not overlap
// another customer's unless forced) are then checked for a changed
// customer alone, in time proportional to its own logins, networks and
// domains, not to the directory's.
type owners struct {
	logins map[string]string
	claims *config.Claims
}

// ownersOf indexes a customer list (the first claimant keeps a login).
func ownersOf(list []config.Customer) *owners {
	n := 0
	for i := range list {
		n += len(list[i].Logins)
	}
	o := &owners{logins: make(map[string]string, n), claims: config.NewClaims()}
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
	o.claims.Add(&c, 0)
}

func (o *owners) remove(c config.Customer) {
	for _, l := range c.Logins {
		if o.logins[l] == c.ID {
			delete(o.logins, l)
		}
	}
	o.claims.Remove(&c)
}

// conflicts returns the errors of c claiming a login another customer
// has or overlapping another's networks or domains, customers in skip
// excepted (they are being replaced and were checked against each
// other), and the overlaps allowed because c or the other is forced. The
// messages are the config file's.
func (o *owners) conflicts(c config.Customer, skip map[string]bool) (errs ValidationError, forced []FieldError) {
	return o.conflictsExcept(c, func(id string) bool { return skip[id] })
}

// conflictsExcept is conflicts with the customers to skip given by a
// function (an import skips every customer it lists).
func (o *owners) conflictsExcept(c config.Customer, skip func(id string) bool) (errs ValidationError, forced []FieldError) {
	for j, l := range c.Logins {
		if id, ok := o.logins[l]; ok && id != c.ID && !skip(id) {
			errs = append(errs, FieldError{Customer: c.ID, Field: fmt.Sprintf("logins[%d]", j), Message: fmt.Sprintf("login %q also belongs to customer %q", l, id)})
		}
	}
	for _, ov := range o.claims.Overlaps(&c, skip, -1) {
		fe := FieldError{Customer: c.ID, Field: ov.Field, Message: ov.Message()}
		if ov.Forced {
			forced = append(forced, fe)
		} else {
			errs = append(errs, fe)
		}
	}
	return errs, forced
}
