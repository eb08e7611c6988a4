package gateway

import (
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
)

// Rebind returns the State for a live directory change: cfg is cur's
// config with the customers named in changed added, changed or removed,
// dir its index (cur.Dir.Update). The checks are kept: they read each
// customer's own settings from the customer (policy.Customer.Settings,
// made when the changed customers were validated), so a change costs the
// index and the changed customers, not every check of the chain. When a
// family says that a changed customer touches what its checks hold
// (config.CustomerSection.Rebuilds: auth's signing keys), the State is
// built anew around dir instead. cur is not modified: the messages under
// way finish on it.
func Rebind(cur *State, cfg *config.Config, dir *customer.Directory, changed map[string]bool) (*State, error) {
	deps := cur.Deps.WithConfig(cfg)
	deps.Directory = dir
	if changed == nil || rebuilds(cur.Dir, dir, changed) {
		return Build(deps)
	}
	local, err := customer.NewLocalIdentifier(cfg, dir)
	if err != nil {
		return nil, err
	}
	st := *cur
	st.Config, st.Dir, st.Local, st.Deps = cfg, dir, local, deps
	if deps.Live != nil {
		deps.Live.Set(dir)
	}
	return &st, nil
}

// rebuilds reports whether a family's checks must be built anew for the
// change of the changed customers from old to dir.
func rebuilds(old, dir *customer.Directory, changed map[string]bool) bool {
	var secs []config.CustomerSection
	for _, cs := range CustomerSections() {
		if cs.Rebuilds != nil {
			secs = append(secs, cs)
		}
	}
	if len(secs) == 0 {
		return false
	}
	for id := range changed {
		var before, after *config.Customer
		if old != nil {
			before, _ = old.Def(id)
		}
		after, _ = dir.Def(id)
		for _, cs := range secs {
			if cs.Rebuilds(before, after) {
				return true
			}
		}
	}
	return false
}
