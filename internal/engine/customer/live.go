package customer

import (
	"sync/atomic"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Live is the directory in force, for what outlives one State: a check
// kept across live directory changes (gateway.Rebind) asks it whether an
// id is a customer, and sees the customers added since it was built. The
// zero Live knows no customer until Set.
type Live struct {
	dir atomic.Pointer[Directory]
}

// Set makes d the directory in force.
func (l *Live) Set(d *Directory) { l.dir.Store(d) }

// ByID returns the customer with the given id in the directory in force.
func (l *Live) ByID(id string) (*policy.Customer, bool) {
	d := l.dir.Load()
	if d == nil {
		return nil, false
	}
	return d.ByID(id)
}
