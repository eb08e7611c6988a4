package standing

import (
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// Family is the standing family as the gateway plugs it in: the standing
// check (MAIL FROM) and the standing: section. The stops, the gateway's
// copy of them and the content flag are one per store (Parts).
var Family = setup.Family{
	Name:     "standing",
	Sections: []config.SectionSpec{Section},
	Commands: Commands,
	Setup:    setupRuntime,
	Checks: []setup.Check{
		{Spec: Spec, New: func(d *setup.Deps) (policy.Check, error) {
			p, err := PartsOf(d)
			if err != nil {
				return nil, err
			}
			return NewCheck(p.View), nil
		}},
	},
}

// Parts are the long-lived objects of the family on one store: the
// backend, the gateway's copy of the stops and the content flag (a
// decision observer whose Run counts in the background).
type Parts struct {
	Backend Backend
	View    *View
	Flags   *Flags
}

// PartsOf returns the family's parts for d's store, made once per store
// and given d's settings (a reload changes them in place). With
// d.Shared the content flag's Run is started with the daemon's
// background work.
func PartsOf(d *setup.Deps) (*Parts, error) {
	c, err := ConfigOf(d.Config)
	if err != nil {
		return nil, err
	}
	b, err := BackendOf(d.Store)
	if err != nil {
		return nil, err
	}
	v, err := d.Store.Shared("standing.parts", func() (any, error) {
		view := NewView(b, d.Clock, c.Refresh, d.Logger)
		return &Parts{Backend: b, View: view, Flags: NewFlags(b, view, c, d.Clock, d.Logger)}, nil
	})
	if err != nil {
		return nil, err
	}
	p := v.(*Parts)
	p.View.SetRefresh(c.Refresh)
	p.Flags.SetConfig(c)
	if d.Shared != nil {
		d.Shared.Get("standing.flags", func() any { return p.Flags })
	}
	return p, nil
}
