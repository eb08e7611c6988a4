package customer

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// ordGap is the spacing of the customers' order keys in a fresh
// directory: room for customers to be inserted between two others by
// later updates before a rebuild is needed.
const ordGap = 1 << 20

// Update returns the directory of cfg, which differs from d's config only
// in the customers named in changed (added, changed or removed). d is not
// modified (the messages under way keep judging by it): the new
// directory shares d's unchanged customers and copies only the maps it
// changes, so an update costs the changed customers plus copying the
// index maps, not rebuilding a million logins. It falls back to
// NewDirectory when changed is nil (everything changed) or the order keys
// have no room left.
func (d *Directory) Update(cfg *config.Config, changed map[string]bool) (*Directory, error) {
	if d == nil || d.ord == nil || changed == nil {
		return NewDirectory(cfg) // nil changed: everything (EffectiveUpdate)
	}
	n := &Directory{
		all:   make([]*policy.Customer, 0, len(cfg.Customers)),
		byID:  maps.Clone(d.byID),
		exact: maps.Clone(d.exact),
		defs:  maps.Clone(d.defs),
		ord:   maps.Clone(d.ord),
		globs: d.globs.clone(),
	}
	n.networks.v4 = d.networks.v4.clone()
	n.networks.v6 = d.networks.v6.clone()
	// Take the changed customers' old entries out.
	for id := range changed {
		old, ok := d.byID[id]
		if !ok {
			continue
		}
		def := d.defs[id]
		for _, l := range def.Logins {
			if hasMeta(l) {
				n.globs.remove(l, old)
			} else if n.exact[l] == old {
				delete(n.exact, l)
			}
		}
		for _, p := range old.Networks {
			n.networks.remove(p, old)
		}
		delete(n.byID, id)
		delete(n.defs, id)
		delete(n.ord, id)
	}
	// Walk the new order: unchanged customers keep their entries and
	// order key; a changed one gets a key between its neighbours'.
	prev := int64(-ordGap)
	for i := range cfg.Customers {
		cc := &cfg.Customers[i]
		if !changed[cc.ID] {
			c, ok := n.byID[cc.ID]
			if !ok {
				return nil, fmt.Errorf("customer %q: not in the previous directory and not marked changed", cc.ID)
			}
			n.all = append(n.all, c)
			prev = n.ord[cc.ID]
			continue
		}
		next := prev + 2*ordGap
		for j := i + 1; j < len(cfg.Customers); j++ {
			if id := cfg.Customers[j].ID; !changed[id] {
				if o, ok := n.ord[id]; ok {
					next = o
				}
				break
			}
		}
		if next-prev < 2 {
			return NewDirectory(cfg) // no room: renumber
		}
		ord := prev + (next-prev)/2
		c, err := build(cc)
		if err != nil {
			return nil, fmt.Errorf("customer %q: %w", cc.ID, err)
		}
		n.all = append(n.all, c)
		n.byID[c.ID], n.defs[c.ID], n.ord[c.ID] = c, cc, ord
		for _, l := range cc.Logins {
			if hasMeta(l) {
				n.globs.insert(glob{pattern: l, order: ord, c: c})
			} else if _, dup := n.exact[l]; !dup {
				n.exact[l] = c
			}
		}
		for _, p := range c.Networks {
			n.networks.add(p, c)
		}
		prev = ord
	}
	return n, nil
}

// clone copies the index's maps (the buckets are shared until changed:
// remove and insert replace a bucket, never write into it).
func (g *globIndex) clone() globIndex {
	return globIndex{
		byPrefix: maps.Clone(g.byPrefix), prefixLens: slices.Clone(g.prefixLens),
		bySuffix: maps.Clone(g.bySuffix), suffixLens: slices.Clone(g.suffixLens),
		rest: slices.Clone(g.rest),
	}
}

// bucket returns the map and key a pattern is filed under (nil map: rest).
func (g *globIndex) bucket(pattern string) (map[string][]glob, string, *[]int) {
	if pre := literalPrefix(pattern); pre != "" {
		if g.byPrefix == nil {
			g.byPrefix = map[string][]glob{}
		}
		return g.byPrefix, pre, &g.prefixLens
	}
	if suf := literalSuffix(pattern); suf != "" {
		if g.bySuffix == nil {
			g.bySuffix = map[string][]glob{}
		}
		return g.bySuffix, suf, &g.suffixLens
	}
	return nil, "", nil
}

// remove takes a customer's pattern out, into a new bucket slice.
func (g *globIndex) remove(pattern string, c *policy.Customer) {
	keep := func(list []glob) []glob {
		out := make([]glob, 0, len(list))
		for _, gl := range list {
			if gl.c != c || gl.pattern != pattern {
				out = append(out, gl)
			}
		}
		return out
	}
	m, k, _ := g.bucket(pattern)
	if m == nil {
		g.rest = keep(g.rest)
		return
	}
	if l := keep(m[k]); len(l) > 0 {
		m[k] = l
	} else {
		delete(m, k)
	}
}

// insert files a pattern at its place in order, into a new bucket slice.
func (g *globIndex) insert(gl glob) {
	put := func(list []glob) []glob {
		i, _ := slices.BinarySearchFunc(list, gl.order, func(x glob, o int64) int {
			switch {
			case x.order < o:
				return -1
			case x.order > o:
				return 1
			}
			return 0
		})
		out := make([]glob, 0, len(list)+1)
		out = append(out, list[:i]...)
		out = append(out, gl)
		return append(out, list[i:]...)
	}
	m, k, lens := g.bucket(gl.pattern)
	if m == nil {
		g.rest = put(g.rest)
		return
	}
	m[k] = put(m[k])
	if i, found := slices.BinarySearch(*lens, len(k)); !found {
		*lens = slices.Insert(*lens, i, len(k))
	}
}

// clone copies the per-length maps' index; remove and add copy a length's
// map before writing to it.
func (lm *lengthMaps) clone() lengthMaps {
	out := lengthMaps{lens: slices.Clone(lm.lens), m: maps.Clone(lm.m)}
	out.owned = map[int]bool{}
	return out
}

// own makes the map of one length this index's own before a write.
func (lm *lengthMaps) own(bits int) {
	if lm.owned == nil || lm.owned[bits] {
		return
	}
	if mm, ok := lm.m[bits]; ok {
		lm.m[bits] = maps.Clone(mm)
	}
	lm.owned[bits] = true
}

func (pi *prefixIndex) remove(p netip.Prefix, c *policy.Customer) {
	lm, k, bits := pi.slot(p)
	lm.own(bits)
	if mm := lm.m[bits]; mm != nil && mm[k] == c {
		delete(mm, k)
	}
}
