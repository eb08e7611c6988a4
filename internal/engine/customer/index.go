package customer

import (
	"encoding/binary"
	"net/netip"
	"path"
	"slices"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// globIndex finds the first (in config order) login glob matching a login
// without trying every glob: a glob is filed under its literal prefix (the
// text before its first metacharacter) or, when it starts with one, under
// its literal suffix; a lookup tries only the buckets whose key is a prefix
// or a suffix of the login (one map lookup per distinct key length).
type globIndex struct {
	byPrefix   map[string][]glob
	prefixLens []int // distinct key lengths of byPrefix, ascending
	bySuffix   map[string][]glob
	suffixLens []int
	rest       []glob // neither a literal prefix nor suffix ("*", "?*")
}

type glob struct {
	pattern string
	order   int64 // the customer's order key (config order): the first match wins
	c       *policy.Customer
}

func (g *globIndex) add(gl glob) {
	pre := literalPrefix(gl.pattern)
	switch {
	case pre != "":
		if g.byPrefix == nil {
			g.byPrefix = map[string][]glob{}
		}
		g.byPrefix[pre] = append(g.byPrefix[pre], gl)
	case literalSuffix(gl.pattern) != "":
		suf := literalSuffix(gl.pattern)
		if g.bySuffix == nil {
			g.bySuffix = map[string][]glob{}
		}
		g.bySuffix[suf] = append(g.bySuffix[suf], gl)
	default:
		g.rest = append(g.rest, gl)
	}
}

// finish computes the key lengths once every glob is added.
func (g *globIndex) finish() {
	lens := func(m map[string][]glob) []int {
		seen := map[int]bool{}
		var out []int
		for k := range m {
			if !seen[len(k)] {
				seen[len(k)] = true
				out = append(out, len(k))
			}
		}
		slices.Sort(out)
		return out
	}
	g.prefixLens, g.suffixLens = lens(g.byPrefix), lens(g.bySuffix)
}

// match returns the matching glob that comes first in config order.
func (g *globIndex) match(login string) (*policy.Customer, bool) {
	var best glob
	found := false
	try := func(list []glob) {
		for _, gl := range list { // each bucket is in config order
			if found && gl.order >= best.order {
				return
			}
			if ok, _ := path.Match(gl.pattern, login); ok {
				best, found = gl, true
				return
			}
		}
	}
	for _, n := range g.prefixLens {
		if n > len(login) {
			break
		}
		try(g.byPrefix[login[:n]])
	}
	for _, n := range g.suffixLens {
		if n > len(login) {
			break
		}
		try(g.bySuffix[login[len(login)-n:]])
	}
	try(g.rest)
	return best.c, found
}

// literalPrefix is the text of a glob before its first metacharacter. A
// backslash escape ends it too (the escaped character is literal, but
// keeping the key exact is simpler than unescaping).
func literalPrefix(p string) string {
	if i := strings.IndexAny(p, `*?[\`); i >= 0 {
		return p[:i]
	}
	return p
}

// literalSuffix is the text of a glob after its last metacharacter, when
// that text has no escape and no closing bracket of a class.
func literalSuffix(p string) string {
	i := strings.LastIndexAny(p, `*?]\`)
	if i < 0 {
		return p
	}
	s := p[i+1:]
	if strings.ContainsAny(s, `[\`) {
		return ""
	}
	return s
}

// prefixIndex answers longest-prefix match over the customers' networks:
// one hash map per prefix length in use, tried from the longest length
// down, so a lookup costs at most one map probe per distinct length (a
// handful in practice, 33 for IPv4 and 129 for IPv6 at worst), whatever
// the number of networks.
type prefixIndex struct {
	v4, v6 lengthMaps
}

type lengthMaps struct {
	lens []int // descending
	m    map[int]map[key128]*policy.Customer
	// owned, in a copy made by clone, marks the lengths whose map the
	// copy has made its own (the others are shared with the original).
	owned map[int]bool
}

type key128 struct{ hi, lo uint64 }

func (lm *lengthMaps) add(k key128, bits int, c *policy.Customer) {
	if lm.m == nil {
		lm.m = map[int]map[key128]*policy.Customer{}
	}
	lm.own(bits)
	mm, ok := lm.m[bits]
	if !ok {
		mm = map[key128]*policy.Customer{}
		lm.m[bits] = mm
		if lm.owned != nil {
			lm.owned[bits] = true
		}
		lm.lens = append(lm.lens, bits)
		slices.SortFunc(lm.lens, func(a, b int) int { return b - a })
	}
	if _, dup := mm[k]; !dup { // the first owner wins, as in config order
		mm[k] = c
	}
}

func (lm *lengthMaps) lookup(k key128) *policy.Customer {
	for _, bits := range lm.lens {
		if c, ok := lm.m[bits][mask(k, bits)]; ok {
			return c
		}
	}
	return nil
}

func addrKey(a netip.Addr) key128 {
	b := a.As16()
	return key128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// mask keeps the first bits bits of k (of the 128-bit form; IPv4 lengths
// are stored shifted by 96, the ::ffff:0:0/96 form).
func mask(k key128, bits int) key128 {
	switch {
	case bits >= 128:
		return k
	case bits > 64:
		return key128{k.hi, k.lo &^ (1<<(128-bits) - 1)}
	case bits == 64:
		return key128{k.hi, 0}
	case bits == 0:
		return key128{}
	default:
		return key128{k.hi &^ (1<<(64-bits) - 1), 0}
	}
}

func (pi *prefixIndex) add(p netip.Prefix, c *policy.Customer) {
	lm, k, bits := pi.slot(p)
	lm.add(k, bits, c)
}

// slot returns the maps, key and length a prefix is filed under.
func (pi *prefixIndex) slot(p netip.Prefix) (*lengthMaps, key128, int) {
	// A v4-mapped IPv6 prefix stays IPv6: it never contained an (unmapped)
	// IPv4 client, and still does not.
	a := p.Addr()
	if a.Is4() {
		k := addrKey(netip.AddrFrom16(a.As16()))
		bits := p.Bits() + 96
		return &pi.v4, mask(k, bits), bits
	}
	return &pi.v6, mask(addrKey(a), p.Bits()), p.Bits()
}

func (pi *prefixIndex) lookup(a netip.Addr) *policy.Customer {
	a = a.Unmap()
	if a.Is4() {
		return pi.v4.lookup(addrKey(netip.AddrFrom16(a.As16())))
	}
	return pi.v6.lookup(addrKey(a))
}
