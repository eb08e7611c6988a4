package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/aupguard/aupguard/internal/mailaddr"
)

// Bounds of a customer entry.
const (
	// MaxIDLength is the longest customer id.
	MaxIDLength = 64
	// DefaultMaxIPv4Prefix and DefaultMaxIPv6Prefix are the broadest
	// networks a customer entry may claim unless forced
	// (directory.max_network_prefix).
	DefaultMaxIPv4Prefix = 16
	DefaultMaxIPv6Prefix = 32
)

// DirectoryConfig bounds what one customer entry may claim; the same
// rules hold for the file's customers and for every change of the live
// directory (command, admin API, import).
type DirectoryConfig struct {
	// MaxNetworkPrefix is the broadest network a customer may have: a
	// network with a shorter prefix (a /8 when the bound is 16) is refused
	// unless the entry is forced. Loopback (127.0.0.0/8) is exempt: it is
	// this host.
	MaxNetworkPrefix NetworkBound `yaml:"max_network_prefix"`
}

// loopbackV4 is IPv4's loopback network (RFC 1122 §3.2.1.3 (g)).
var loopbackV4 = netip.MustParsePrefix("127.0.0.0/8")

// isLoopbackPrefix reports whether p lies inside the loopback network.
func isLoopbackPrefix(p netip.Prefix) bool {
	a := p.Addr().Unmap()
	if a.Is4() {
		return loopbackV4.Contains(a) && p.Bits() >= loopbackV4.Bits()
	}
	return a.IsLoopback() && p.Bits() == 128
}

// NetworkBound is a prefix length per address family.
type NetworkBound struct {
	IPv4 int `yaml:"ipv4"`
	IPv6 int `yaml:"ipv6"`
}

func (d *DirectoryConfig) defaults() {
	if d.MaxNetworkPrefix.IPv4 == 0 {
		d.MaxNetworkPrefix.IPv4 = DefaultMaxIPv4Prefix
	}
	if d.MaxNetworkPrefix.IPv6 == 0 {
		d.MaxNetworkPrefix.IPv6 = DefaultMaxIPv6Prefix
	}
}

func (d *DirectoryConfig) validate(v *validator) {
	if b := d.MaxNetworkPrefix.IPv4; b < 1 || b > 32 {
		v.errf("directory.max_network_prefix.ipv4", "want a prefix length from 1 to 32, got %d", b)
	}
	if b := d.MaxNetworkPrefix.IPv6; b < 1 || b > 128 {
		v.errf("directory.max_network_prefix.ipv6", "want a prefix length from 1 to 128, got %d", b)
	}
}

// forceHint ends the message of a rule that an entry's force: true waives.
const forceHint = " (set force: true on the entry to allow it)"

// forceable records msg at p as an error, or as a warning saying it was
// forced when the entry is.
func (v *validator) forceable(forced bool, p, msg string) {
	if forced {
		v.warnf(p, "forced: %s", msg)
		return
	}
	v.errf(p, "%s%s", msg, forceHint)
}

// IsPublicSuffix reports whether d (normalised) is a public suffix
// ("net", "co.uk", "github.io"; an unknown top-level name counts as one)
// under which registrants, not one customer, hold names.
func IsPublicSuffix(d string) bool {
	ps, _ := publicsuffix.PublicSuffix(d)
	return ps == d
}

// CatchAllLogin says why a login glob would match the logins of
// everybody (every login, or every domain's), or "" when it does not:
// "*", "*@*", "?*@*.*", "*@*.com" are catch-alls; "acme-*",
// "*@acme.example" and "*@*.acme.example" are not.
func CatchAllLogin(l string) string {
	if !strings.ContainsAny(l, "*?[") {
		return ""
	}
	at := strings.LastIndexByte(l, '@')
	if at < 0 {
		if !hasLiteral(l) {
			return "it matches every login"
		}
		return ""
	}
	domain := l[at+1:]
	if !strings.ContainsAny(domain, "*?[") {
		if IsPublicSuffix(strings.ToLower(domain)) {
			return fmt.Sprintf("its domain %q is a public suffix", domain)
		}
		return ""
	}
	suffix := domain[strings.LastIndexAny(domain, "*?]")+1:]
	base := strings.ToLower(strings.TrimLeft(suffix, "."))
	switch {
	case base == "":
		return "its domain part has no literal domain: it matches the logins of every domain"
	case IsPublicSuffix(base):
		return fmt.Sprintf("its domain part fixes only the public suffix %q: it matches the logins of every domain under it", base)
	}
	return ""
}

// hasLiteral reports whether a glob has a character outside its
// metacharacters and bracket expressions (an escaped one is literal).
func hasLiteral(g string) bool {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '*', '?':
		case '[':
			if j := strings.IndexByte(g[i+1:], ']'); j >= 0 {
				i += j + 1
			}
		default:
			return true
		}
	}
	return false
}

// checkEntry applies the rules of one customer entry that do not depend
// on the other customers: text, id bounds, the network bound, catch-all
// logins, public-suffix domains. Like validateCustomers it runs over every
// login of every customer at start, so a field's path is only formatted
// for an error.
func (c *Config) checkEntry(v *validator, p string, cu *Customer) {
	if len(cu.ID) > MaxIDLength {
		v.errf(p+".id", "id is %d characters long; at most %d", len(cu.ID), MaxIDLength)
	}
	text := func(field, what, s string) bool {
		if err := mailaddr.CheckText(s); err != nil {
			v.errf(p+"."+field, "%s %q: %v", what, s, err)
			return false
		}
		return true
	}
	at := func(list string, j int) string { return list + "[" + strconv.Itoa(j) + "]" }
	text("name", "name", cu.Name)
	text("abuse_contact", "abuse_contact", cu.AbuseContact)
	text("unsubscribe", "unsubscribe", cu.Unsubscribe)
	for j, u := range cu.LocalUsers {
		if mailaddr.CheckText(u) != nil {
			text(at("local_users", j), "local user", u)
		}
	}
	for j, k := range cu.DKIM {
		text(at("dkim", j)+".domain", "DKIM domain", k.Domain)
		text(at("dkim", j)+".selector", "DKIM selector", k.Selector)
		text(at("dkim", j)+".key_file", "DKIM key file", k.KeyFile)
	}
	for j, l := range cu.Logins {
		if mailaddr.CheckText(l) != nil {
			text(at("logins", j), "login", l)
			continue
		}
		if why := CatchAllLogin(l); why != "" {
			v.forceable(cu.Force, p+"."+at("logins", j), fmt.Sprintf("login pattern %q is a catch-all: %s", l, why))
		}
	}
	bound := c.Directory.MaxNetworkPrefix
	for j, n := range cu.Networks {
		if mailaddr.CheckText(n) != nil {
			text(at("networks", j), "network", n)
			continue
		}
		pfx, err := ParsePrefix(n)
		if err != nil {
			continue // reported by validateCustomers
		}
		key, b := "ipv4", bound.IPv4
		if pfx.Addr().Is6() {
			key, b = "ipv6", bound.IPv6
		}
		// The loopback network is this host, however it is written
		// (127.0.0.0/8, ::1/128): claiming it attributes the MTA host's
		// own local clients (webmail, scripts) and reaches nothing beyond
		// the host, so the breadth bound does not apply to it (the
		// overlap rule still does).
		if pfx.Bits() < b && !isLoopbackPrefix(pfx) {
			v.forceable(cu.Force, p+"."+at("networks", j), fmt.Sprintf("network %s is broader than directory.max_network_prefix.%s (/%d)", pfx, key, b))
		}
	}
	for j, d := range cu.Domains {
		if mailaddr.CheckText(d) != nil {
			text(at("domains", j), "domain", d)
			continue
		}
		pat, err := mailaddr.ParsePattern(d)
		if err != nil {
			continue // reported by validateCustomers
		}
		if IsPublicSuffix(pat.Domain()) {
			what := "domain %q is a public suffix: names under it belong to many registrants"
			if pat.Wildcard() {
				what = "wildcard %q covers a public suffix: names under it belong to many registrants"
			}
			v.forceable(cu.Force, p+"."+at("domains", j), fmt.Sprintf(what, d))
		}
	}
}

// claimant is a customer holding a network or a domain.
type claimant struct {
	id     string
	forced bool
	pos    int
}

// Claims indexes the networks and sender domains the customers of a
// directory claim, to find what a customer's entry overlaps of another's:
// the same network (refused), a network inside or around another's, the
// same domain, a domain under another's wildcard or a wildcard over
// another's domain (refused unless either entry is forced). It answers
// for one customer in time proportional to its own networks and domains
// (and the prefix lengths in use), not to the directory's size.
type Claims struct {
	nets  map[netip.Prefix][]claimant
	lens  [2]map[int]int // per family (0 IPv4, 1 IPv6): prefix length -> networks
	exact map[string][]claimant
	wild  map[string][]claimant // by the wildcard's base domain

	// The sorted lists answer "what lies under this network or domain".
	// They are built at the first query; after that a change is applied
	// to them in place (a binary search and a copy), unless many changes
	// come between two queries (a sync of a large import): then they are
	// rebuilt at the next query, once.
	built   bool
	ops     int            // in-place changes since the last query
	netList []netip.Prefix // sorted by address then length
	domList []string       // reversed domains (com.example.mail), sorted
}

// maxInPlace is how many in-place list changes may come between two
// queries before the lists are rebuilt instead.
const maxInPlace = 64

// NewClaims returns an empty index.
func NewClaims() *Claims {
	return &Claims{nets: map[netip.Prefix][]claimant{}, lens: [2]map[int]int{{}, {}},
		exact: map[string][]claimant{}, wild: map[string][]claimant{}}
}

func family(p netip.Prefix) int {
	if p.Addr().Is6() {
		return 1
	}
	return 0
}

// Add indexes c's networks and domains; pos orders the customers (the
// full validation reports an overlap at the later of two entries).
func (cl *Claims) Add(c *Customer, pos int) {
	who := claimant{id: c.ID, forced: c.Force, pos: pos}
	for _, n := range c.Networks {
		p, err := ParsePrefix(n)
		if err != nil {
			continue
		}
		if _, had := cl.nets[p]; !had {
			cl.listChange(func() { cl.netList = insertSorted(cl.netList, p, comparePrefix) })
		}
		cl.nets[p] = append(cl.nets[p], who)
		cl.lens[family(p)][p.Bits()]++
	}
	for _, d := range c.Domains {
		pat, err := mailaddr.ParsePattern(d)
		if err != nil {
			continue
		}
		m := cl.exact
		if pat.Wildcard() {
			m = cl.wild
		}
		dom := pat.Domain()
		if !cl.hasDomain(dom) {
			cl.listChange(func() { cl.domList = insertSorted(cl.domList, reverseDomain(dom), strings.Compare) })
		}
		m[dom] = append(m[dom], who)
	}
}

func (cl *Claims) hasDomain(d string) bool {
	_, e := cl.exact[d]
	_, w := cl.wild[d]
	return e || w
}

// listChange applies a change to the built lists in place, or leaves
// them to be rebuilt at the next query.
func (cl *Claims) listChange(f func()) {
	if !cl.built {
		return
	}
	if cl.ops++; cl.ops > maxInPlace {
		cl.built = false
		return
	}
	f()
}

func insertSorted[T any](list []T, v T, cmp func(a, b T) int) []T {
	i, found := slices.BinarySearchFunc(list, v, cmp)
	if found {
		return list
	}
	return slices.Insert(list, i, v)
}

func deleteSorted[T any](list []T, v T, cmp func(a, b T) int) []T {
	if i, found := slices.BinarySearchFunc(list, v, cmp); found {
		return slices.Delete(list, i, i+1)
	}
	return list
}

// Remove takes c's claims out of the index.
func (cl *Claims) Remove(c *Customer) {
	drop := func(list []claimant) []claimant {
		return slices.DeleteFunc(list, func(w claimant) bool { return w.id == c.ID })
	}
	for _, n := range c.Networks {
		p, err := ParsePrefix(n)
		if err != nil {
			continue
		}
		if l, ok := cl.nets[p]; ok {
			before := len(l)
			if l = drop(l); len(l) == 0 {
				delete(cl.nets, p)
				cl.listChange(func() { cl.netList = deleteSorted(cl.netList, p, comparePrefix) })
			} else {
				cl.nets[p] = l
			}
			if removed := before - len(l); removed > 0 {
				if cl.lens[family(p)][p.Bits()] -= removed; cl.lens[family(p)][p.Bits()] <= 0 {
					delete(cl.lens[family(p)], p.Bits())
				}
			}
		}
	}
	for _, d := range c.Domains {
		pat, err := mailaddr.ParsePattern(d)
		if err != nil {
			continue
		}
		m := cl.exact
		if pat.Wildcard() {
			m = cl.wild
		}
		dom := pat.Domain()
		if _, ok := m[dom]; !ok {
			continue
		}
		if l := drop(m[dom]); len(l) == 0 {
			delete(m, dom)
		} else {
			m[dom] = l
		}
		if !cl.hasDomain(dom) {
			cl.listChange(func() { cl.domList = deleteSorted(cl.domList, reverseDomain(dom), strings.Compare) })
		}
	}
}

func (cl *Claims) sortLists() {
	cl.ops = 0
	if cl.built {
		return
	}
	cl.netList = cl.netList[:0]
	for p := range cl.nets {
		cl.netList = append(cl.netList, p)
	}
	slices.SortFunc(cl.netList, comparePrefix)
	cl.domList = cl.domList[:0]
	for d := range cl.exact {
		cl.domList = append(cl.domList, reverseDomain(d))
	}
	for d := range cl.wild {
		if _, ok := cl.exact[d]; !ok {
			cl.domList = append(cl.domList, reverseDomain(d))
		}
	}
	slices.Sort(cl.domList)
	cl.built = true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// reverseDomain is mail.example.com as com.example.mail: a domain's
// subdomains then sort right after it.
func reverseDomain(d string) string {
	labels := strings.Split(d, ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

// Overlap is one overlap of a customer's entry with another customer's.
type Overlap struct {
	// Field is the entry's field ("networks[0]", "domains[1]").
	Field string
	// Other is the other customer.
	Other string
	// Msg says what overlaps.
	Msg string
	// Waivable is false for what force cannot allow (the very same
	// network twice: no longest prefix decides between them).
	Waivable bool
	// Forced is true when the entry or the other is forced: the overlap
	// is allowed, and reported as a warning.
	Forced bool
}

// Overlaps returns what c's networks and domains overlap of the other
// customers in the index. ignore (may be nil) leaves customers out by
// id; with before >= 0 only customers added at a position below it count
// (each pair of the full validation is then reported once).
func (cl *Claims) Overlaps(c *Customer, ignore func(id string) bool, before int) []Overlap {
	cl.sortLists()
	var out []Overlap
	other := func(w claimant) bool {
		return w.id != c.ID && (ignore == nil || !ignore(w.id)) && (before < 0 || w.pos < before)
	}
	add := func(field string, w claimant, waivable bool, format string, args ...any) {
		out = append(out, Overlap{Field: field, Other: w.id, Msg: fmt.Sprintf(format, args...), Waivable: waivable, Forced: waivable && (c.Force || w.forced)})
	}
	for j, n := range c.Networks {
		p, err := ParsePrefix(n)
		if err != nil {
			continue
		}
		field := fmt.Sprintf("networks[%d]", j)
		for _, w := range cl.nets[p] {
			if other(w) {
				add(field, w, false, "network %s is already customer %q's", p, w.id)
			}
		}
		// Inside another's network: the shorter prefixes in use.
		for bits := 0; bits < p.Bits(); bits++ {
			if cl.lens[family(p)][bits] == 0 {
				continue
			}
			q, _ := p.Addr().Prefix(bits)
			for _, w := range cl.nets[q] {
				if other(w) {
					add(field, w, true, "network %s is inside customer %q's network %s", p, w.id, q)
				}
			}
		}
		// Around another's network: the longer ones it contains, a
		// contiguous run of the sorted list from p on.
		i, _ := slices.BinarySearchFunc(cl.netList, p, comparePrefix)
		for ; i < len(cl.netList) && p.Contains(cl.netList[i].Addr()); i++ {
			q := cl.netList[i]
			if q == p {
				continue
			}
			for _, w := range cl.nets[q] {
				if other(w) {
					add(field, w, true, "network %s contains customer %q's network %s", p, w.id, q)
				}
			}
		}
	}
	for j, d := range c.Domains {
		pat, err := mailaddr.ParsePattern(d)
		if err != nil {
			continue
		}
		field := fmt.Sprintf("domains[%d]", j)
		dom := pat.Domain()
		if !pat.Wildcard() {
			for _, w := range cl.exact[dom] {
				if other(w) {
					add(field, w, true, "domain %q is customer %q's", d, w.id)
				}
			}
		} else {
			for _, w := range cl.wild[dom] {
				if other(w) {
					add(field, w, true, "wildcard %q is customer %q's", d, w.id)
				}
			}
		}
		// Under another's wildcard: the wildcards of its parents.
		for rest := dom; ; {
			k := strings.IndexByte(rest, '.')
			if k < 0 {
				break
			}
			rest = rest[k+1:]
			for _, w := range cl.wild[rest] {
				if other(w) {
					add(field, w, true, "%q is under customer %q's wildcard \"*.%s\"", d, w.id, rest)
				}
			}
		}
		if !pat.Wildcard() {
			continue
		}
		// A wildcard over another's names: the domains under its base.
		prefix := reverseDomain(dom) + "."
		i, _ := slices.BinarySearch(cl.domList, prefix)
		for ; i < len(cl.domList) && strings.HasPrefix(cl.domList[i], prefix); i++ {
			sub := reverseDomain(cl.domList[i])
			for _, w := range cl.exact[sub] {
				if other(w) {
					add(field, w, true, "wildcard %q covers customer %q's domain %q", d, w.id, sub)
				}
			}
			for _, w := range cl.wild[sub] {
				if other(w) {
					add(field, w, true, "wildcard %q covers customer %q's wildcard \"*.%s\"", d, w.id, sub)
				}
			}
		}
	}
	return out
}

// Message is the overlap's text as the directory reports it.
func (o Overlap) Message() string {
	switch {
	case o.Forced:
		return "forced: " + o.Msg
	case o.Waivable:
		return o.Msg + " (set force: true on either entry to allow it)"
	}
	return o.Msg
}
