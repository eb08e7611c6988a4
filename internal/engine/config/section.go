package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// SectionSpec is a top-level section of the config that a check family
// owns (headers:, auth:, optout: ...). The core hands the family the raw
// YAML; the family decodes it into its own typed settings, applies its
// defaults and validates it, reporting errors through the Section so that
// they carry their file:line like every other config error.
type SectionSpec struct {
	// Key is the section's top-level YAML key.
	Key string
	// Decode turns the section into the family's typed settings. It runs
	// after the core sections are decoded and defaulted (s.Config), also
	// when the section is absent (s.Node nil: every setting defaults).
	// What it returns is kept even when it reported errors, but a config
	// with errors is refused as a whole.
	Decode func(s *Section) any
}

// CustomerSection is a check family's part of each customer entry: the
// keys of the entry it owns (auth's require_alignment and dkim, bulk
// mail's unsubscribe, the volume limits), validated by the family, which
// makes its typed settings of the customer from them. The core files them
// in the customer's Settings under Family without knowing their type; the
// family reads them back with policy.SettingsOf. A customer is decoded
// when it is validated: at Parse for the file's customers, and for a live
// directory change the changed customers only (WithCustomers), so that a
// change never rescans the others.
type CustomerSection struct {
	// Family names the family; its settings are filed under it.
	Family string
	// Decode validates the family's keys of the customer entry at path p
	// ("customers[3]"), reporting errors through s, and returns the
	// family's settings of that customer, or nil when the entry sets none
	// of them (the family's defaults apply; nothing is stored). s.Config
	// is the config with the families' top-level sections decoded.
	Decode func(s *Section, p string, c *Customer) any
	// Rebuilds, when set, reports whether a live directory change of one
	// customer (old nil: added; new nil: removed) needs the family's
	// checks built anew, because they hold something of the customer
	// beyond its Settings (auth's signing keys). Nil: never; the checks
	// are kept and read the changed customer's new Settings.
	Rebuilds func(old, new *Customer) bool
}

// Section is one family-owned section while it is decoded.
type Section struct {
	// Key is the section's top-level key; Node is its YAML value, nil when
	// the config does not have the section.
	Key  string
	Node *yaml.Node
	// Config is the config being parsed, its core sections decoded and
	// defaulted. A family reads it (provider:, customers:) and never
	// changes it.
	Config *Config
	v      *validator
}

// Decode decodes the section into out, a pointer to the family's settings
// (holding their defaults: a key the config leaves out keeps its value).
// Keys that out does not have and values of the wrong type are reported
// at their line; Decode reports whether the section decoded cleanly.
func (s *Section) Decode(out any) bool {
	if s.Node == nil {
		return true
	}
	before := len(s.v.errs)
	unknownKeys(s.Node, reflect.TypeOf(out), s.Key, func(n *yaml.Node, p, key string) {
		s.v.errs = append(s.v.errs, Error{File: s.Config.File, Line: n.Line, Path: p,
			Msg: fmt.Sprintf("unknown key %q%s", key, didYouMean(key, yamlKeys(reflect.TypeOf(out), p, s.Key)))})
	})
	if err := s.Node.Decode(out); err != nil {
		if te, ok := err.(*yaml.TypeError); ok {
			for _, m := range te.Errors {
				e := yamlError(s.Config.File, m)
				e.Path = pathAtLine(s.Node, s.Key, e.Line)
				s.v.errs = append(s.v.errs, e)
			}
		} else {
			s.v.errs = append(s.v.errs, Error{File: s.Config.File, Line: s.Node.Line, Path: s.Key, Msg: err.Error()})
		}
	}
	return len(s.v.errs) == before
}

// Errorf reports an error at the config path p, a dotted path with [i]
// indexes ("auth.dmarc.policy", "customers[3].unsubscribe"); the line is
// that of the key, or of its nearest parent when the key is absent.
func (s *Section) Errorf(p string, format string, args ...any) { s.v.errf(p, format, args...) }

// Warnf reports a setting that is valid but probably wrong, placed like
// Errorf; check-config prints it and serve logs it.
func (s *Section) Warnf(p string, format string, args ...any) {
	s.Config.warnings = append(s.Config.warnings, Error{File: s.Config.File, Line: s.Config.lineOf(p), Path: p, Msg: fmt.Sprintf(format, args...)})
}

// Failed reports whether any error was reported so far.
func (s *Section) Failed() bool { return len(s.v.errs) > 0 }

// Positive reports n < 0 at p.
func (s *Section) Positive(p string, n int) { s.v.positive(p, n) }

// Duration reports a negative duration at p.
func (s *Section) Duration(p string, d time.Duration) { s.v.duration(p, d) }

// Action parses an action name at p (empty: the zero Action, no error),
// restricted to allowed when any are given.
func (s *Section) Action(p, str string, allowed ...policy.Action) policy.Action {
	before := len(s.v.errs)
	s.v.action(p, str, allowed...)
	if str == "" || len(s.v.errs) > before {
		return 0
	}
	a, _ := policy.ParseAction(str)
	return a
}

// Prefix parses a network (CIDR, or a bare address as a /32 or /128) at p.
func (s *Section) Prefix(p, str string) (netip.Prefix, bool) {
	pr, err := ParsePrefix(str)
	if err != nil {
		s.v.errf(p, "%v", err)
		return netip.Prefix{}, false
	}
	return pr, true
}

// DomainPattern checks a domain or "*.domain" pattern at p.
func (s *Section) DomainPattern(p, str string) { s.v.domainPattern(p, str) }

// Reply checks a custom SMTP reply (code, enhanced code and text) at p.
func (s *Section) Reply(p string, code int, enhanced, text string) {
	s.v.reply(p, code, enhanced, text)
}

// sections are the family-owned sections of a config: their raw YAML as
// the core decoded it, and what each family's Decode made of them.
type sections struct {
	specs map[string]SectionSpec
	typed map[string]any
	// customers are the families' customer sections (Options.Customers).
	customers []CustomerSection
}

// Section returns what the family owning key decoded from its section
// (nil when no family with that key was given to Parse).
func (c *Config) Section(key string) any { return c.sections.typed[key] }

// SectionOf returns the settings of spec's section: what Parse decoded
// when spec was among Options.Sections, else spec decoded now from the raw
// section (for tools and tests that parse with fewer options).
func (c *Config) SectionOf(spec SectionSpec) (any, error) {
	if v, ok := c.sections.typed[spec.Key]; ok {
		return v, nil
	}
	v := &validator{cfg: c}
	s := &Section{Key: spec.Key, Config: c, v: v}
	if n, ok := c.Raw[spec.Key]; ok {
		s.Node = &n
	}
	out := spec.Decode(s)
	if len(v.errs) > 0 {
		return out, v.errs
	}
	return out, nil
}

// decodeSections runs every family's decoder (Parse), reporting unknown
// top-level keys with a "did you mean".
func (c *Config) decodeSections(v *validator, opts Options) {
	specs := opts.Sections
	c.sections = sections{specs: map[string]SectionSpec{}, typed: map[string]any{}, customers: opts.Customers}
	for _, sp := range specs {
		c.sections.specs[sp.Key] = sp
	}
	if specs != nil {
		keys := make([]string, 0, len(c.Raw))
		for k := range c.Raw {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		known := append(yamlKeys(reflect.TypeOf(c), "", ""), sectionKeys(specs)...)
		for _, k := range keys {
			if _, ok := c.sections.specs[k]; !ok {
				n := c.Raw[k]
				line := n.Line
				if kn := c.keyNode(k); kn != nil {
					line = kn.Line
				}
				v.errs = append(v.errs, Error{File: c.File, Line: line, Path: k, Msg: "unknown key" + didYouMean(k, known)})
			}
		}
	}
	for _, sp := range specs {
		s := &Section{Key: sp.Key, Config: c, v: v}
		if n, ok := c.Raw[sp.Key]; ok {
			s.Node = &n
		}
		c.sections.typed[sp.Key] = sp.Decode(s)
	}
	c.checkCustomers(v, c.Customers, 0)
}

// checkCustomers decodes the families' sections of every customer of
// list, whose first entry is customers[first], into its Settings.
func (c *Config) checkCustomers(v *validator, list []Customer, first int) {
	if len(c.sections.customers) == 0 {
		return
	}
	secs := make([]*Section, len(c.sections.customers))
	for k, cs := range c.sections.customers {
		secs[k] = &Section{Key: cs.Family, Config: c, v: v}
	}
	for i := range list {
		cu := &list[i]
		cu.Settings = policy.Settings{}
		p := "customers[" + strconv.Itoa(first+i) + "]"
		for k, cs := range c.sections.customers {
			if val := cs.Decode(secs[k], p, cu); val != nil {
				cu.Settings = cu.Settings.With(cs.Family, val)
			}
		}
	}
}

// CustomerSettings returns the settings cs makes of customer cu: those
// filed when cu was validated with cs among Options.Customers, else cs
// decoded now (for tools and tests that parse with fewer options).
func (c *Config) CustomerSettings(cu *Customer, cs CustomerSection) (any, error) {
	for _, known := range c.sections.customers {
		if known.Family == cs.Family {
			v, _ := policy.SettingsOf[any](cu.Settings, cs.Family)
			return v, nil
		}
	}
	v := &validator{cfg: c}
	out := cs.Decode(&Section{Key: cs.Family, Config: c, v: v}, "customers["+cu.ID+"]", cu)
	if len(v.errs) > 0 {
		return out, v.errs
	}
	return out, nil
}

func sectionKeys(specs []SectionSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Key
	}
	return out
}

// keyNode is the key node of a top-level key (for its line).
func (c *Config) keyNode(k string) *yaml.Node {
	if c.root == nil || c.root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(c.root.Content); i += 2 {
		if c.root.Content[i].Value == k {
			return c.root.Content[i]
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// unknownKeys walks n against the type t it is decoded into and reports
// every mapping key that t does not have (yaml.v3's KnownFields works only
// on a whole document; a family decodes one node). p is n's path; the
// paths below it are only formatted for a key reported (the walk visits
// every key of every customer of a large config).
func unknownKeys(n *yaml.Node, t reflect.Type, p string, report func(n *yaml.Node, p, key string)) {
	w := keyWalk{report: report, segs: []string{p}}
	w.walk(n, t)
}

// keyWalk is one unknownKeys walk: segs is the path of the node being
// walked, a segment at a time ("auth", ".dkim", "[0]").
type keyWalk struct {
	report func(n *yaml.Node, p, key string)
	segs   []string
}

func (w *keyWalk) path() string {
	p := strings.Join(w.segs, "")
	return strings.TrimPrefix(p, ".")
}

func (w *keyWalk) walk(n *yaml.Node, t reflect.Type) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields, open := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			ft, ok := fields[k]
			switch {
			case ok:
				w.segs = append(w.segs, "."+k)
				w.walk(n.Content[i+1], ft)
				w.segs = w.segs[:len(w.segs)-1]
			case !open:
				w.report(n.Content[i], join(w.path(), k), k)
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		if !mayHaveKeys(t.Elem()) {
			return
		}
		for i, e := range n.Content {
			w.segs = append(w.segs, "["+strconv.Itoa(i)+"]")
			w.walk(e, t.Elem())
			w.segs = w.segs[:len(w.segs)-1]
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.segs = append(w.segs, "."+n.Content[i].Value)
			w.walk(n.Content[i+1], t.Elem())
			w.segs = w.segs[:len(w.segs)-1]
		}
	}
}

// mayHaveKeys reports whether a value of type t can hold mapping keys to
// check (a list of strings cannot: its elements are not walked).
func mayHaveKeys(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array, reflect.Interface:
		return true
	}
	return false
}

func join(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

// structFields are a struct type's YAML keys (yamlFields), by type.
type structFields struct {
	fields map[string]reflect.Type
	open   bool
}

// fieldCache holds yamlFields' answers: unknownKeys asks for the same few
// types once per customer entry (100,000 times for a large directory).
var fieldCache sync.Map // reflect.Type -> structFields

// yamlFields maps the YAML keys of struct t to their types (inline structs
// flattened); open is true when t has an inline map that takes any key.
// The map returned is shared: callers do not change it.
func yamlFields(t reflect.Type) (fields map[string]reflect.Type, open bool) {
	if sf, ok := fieldCache.Load(t); ok {
		return sf.(structFields).fields, sf.(structFields).open
	}
	fields, open = readFields(t)
	fieldCache.Store(t, structFields{fields, open})
	return fields, open
}

func readFields(t reflect.Type) (fields map[string]reflect.Type, open bool) {
	fields = map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map {
				open = true
				continue
			}
			sub, o := yamlFields(ft)
			for k, v := range sub {
				fields[k] = v
			}
			open = open || o
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields, open
}

// yamlKeys are the keys valid where p is (for a "did you mean"): the
// fields of the struct found by following p below root.
func yamlKeys(t reflect.Type, p, root string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	segs := splitPath(strings.TrimPrefix(strings.TrimPrefix(p, root), "."))
	if len(segs) > 0 {
		segs = segs[:len(segs)-1] // the unknown key itself
	}
	for _, seg := range segs {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			fields, _ := yamlFields(t)
			ft, ok := fields[seg]
			if !ok {
				return nil
			}
			t = ft
		case reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return nil
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	fields, _ := yamlFields(t)
	out := make([]string, 0, len(fields))
	for k := range fields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// didYouMean is " (did you mean X?)" for the known name closest to k, or "".
func didYouMean(k string, known []string) string {
	if s := policy.Suggest(k, known); s != "" {
		return fmt.Sprintf(" (did you mean %s?)", s)
	}
	return ""
}

// Prefix is a network as the config writes it: CIDR, or a bare address as
// a /32 or /128. It decodes once, with its line on error, so that no
// package parses the string again.
type Prefix struct{ netip.Prefix }

// UnmarshalYAML decodes a network; an error is a type error at its line
// (decoding goes on, so every error of the file is reported).
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	pr, err := ParsePrefix(s)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	p.Prefix = pr
	return nil
}

// MarshalYAML renders the network as CIDR.
func (p Prefix) MarshalYAML() (any, error) { return p.Prefix.String(), nil }

// Prefixes returns the networks of ps.
func Prefixes(ps []Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Prefix
	}
	return out
}

// ValidFieldName reports whether s is a header field name: printable
// US-ASCII except colon (RFC 5322 §2.2, ftext).
func ValidFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// pathAtLine is the config path of the first value of n (whose path is p)
// that sits on line, for placing a type error yaml.v3 reports by line only.
func pathAtLine(n *yaml.Node, p string, line int) string {
	if line == 0 {
		return p
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if q := pathAtLine(v, join(p, k.Value), line); q != "" && (k.Line != line || v.Line == line) {
				return q
			}
			if k.Line == line {
				return join(p, k.Value)
			}
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			if q := pathAtLine(e, fmt.Sprintf("%s[%d]", p, i), line); q != "" {
				return q
			}
		}
	case yaml.ScalarNode:
		if n.Line == line {
			return p
		}
	}
	return ""
}

// Addr is an IP address as the config writes it, decoded once (an error is
// a type error at its line).
type Addr struct{ netip.Addr }

// UnmarshalYAML decodes an address (IPv4-mapped IPv6 is unmapped).
func (a *Addr) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: bad address %q", n.Line, s)}}
	}
	a.Addr = ip.Unmap()
	return nil
}

// MarshalYAML renders the address.
func (a Addr) MarshalYAML() (any, error) { return a.Addr.String(), nil }

// IsZero reports whether the address is unset (for omitempty: yaml.v3
// would otherwise take every Addr for zero, netip.Addr's fields being
// unexported).
func (a Addr) IsZero() bool { return !a.IsValid() }

// Addrs returns the addresses of as.
func Addrs(as []Addr) []netip.Addr {
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = a.Addr
	}
	return out
}
