package config

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/observability/syslog"
)

// validator collects errors with their places.
type validator struct {
	cfg   *Config
	opts  Options
	errs  Errors
	warns Errors
}

// warnf records a warning at the config path p (see errf).
func (v *validator) warnf(p string, format string, args ...any) {
	v.warns = append(v.warns, Error{File: v.cfg.File, Line: v.cfg.lineOf(p), Path: p, Msg: fmt.Sprintf(format, args...)})
}

// errf records an error at the config path p, a dotted path with [i]
// indexes such as "customers[1].networks[0]"; the line is looked up in the
// YAML tree (the nearest existing parent when the key itself is absent).
func (v *validator) errf(p string, format string, args ...any) {
	v.errs = append(v.errs, Error{File: v.cfg.File, Line: v.cfg.lineOf(p), Path: p, Msg: fmt.Sprintf(format, args...)})
}

// lineOf finds the line of a config path, or of its nearest ancestor.
func (c *Config) lineOf(p string) int {
	n := c.root
	if n == nil {
		return 0
	}
	line := n.Line
	for _, seg := range splitPath(p) {
		next := child(n, seg)
		if next == nil {
			break
		}
		n = next
		line = n.Line
	}
	return line
}

func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				out = append(out, part)
				break
			}
			if i > 0 {
				out = append(out, part[:i])
			}
			j := strings.IndexByte(part, ']')
			if j < i {
				break
			}
			out = append(out, part[i:j+1])
			part = part[j+1:]
		}
	}
	return out
}

func child(n *yaml.Node, seg string) *yaml.Node {
	if strings.HasPrefix(seg, "[") {
		i, err := strconv.Atoi(strings.Trim(seg, "[]"))
		if err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == seg {
			// Point at the key for scalars (that is where the eye looks),
			// at the value for collections.
			if n.Content[i+1].Kind == yaml.ScalarNode {
				k := *n.Content[i+1]
				k.Line = n.Content[i].Line
				return &k
			}
			return n.Content[i+1]
		}
	}
	return nil
}

// Helpers for section validators.

// action checks a string action at p (sections that keep one).
func (v *validator) action(p, s string, allowed ...policy.Action) {
	if s == "" {
		return
	}
	a, err := policy.ParseAction(s)
	if err != nil {
		v.errf(p, "%v", err)
		return
	}
	v.allowed(p, ActionOf(a), allowed...)
}

// allowed records an error at p when a is set and not one of allowed
// (its name was checked when it was decoded).
func (v *validator) allowed(p string, a Action, allowed ...policy.Action) {
	if !a.set || len(allowed) == 0 {
		return
	}
	for _, x := range allowed {
		if x == a.Action {
			return
		}
	}
	names := make([]string, len(allowed))
	for i, x := range allowed {
		names[i] = x.String()
	}
	v.errf(p, "action %q not allowed here (want %s)", a.Action.String(), strings.Join(names, " or "))
}

func (v *validator) prefix(p, s string) {
	if _, err := ParsePrefix(s); err != nil {
		v.errf(p, "%v", err)
	}
}

func (v *validator) domainPattern(p, s string) {
	if _, err := mailaddr.ParsePattern(s); err != nil {
		v.errf(p, "bad domain %q: %v", s, err)
	}
}

func (v *validator) positive(p string, n int) {
	if n < 0 {
		v.errf(p, "must not be negative, got %d", n)
	}
}

func (v *validator) duration(p string, d time.Duration) {
	if d < 0 {
		v.errf(p, "must not be negative, got %s", d)
	}
}

func (v *validator) reply(p string, code int, enhanced, text string) {
	if code == 0 && enhanced == "" {
		return
	}
	if _, err := policy.NewReply(code, enhanced, text); err != nil {
		v.errf(p, "%v", err)
	}
}

// ParsePrefix parses a CIDR, or a bare address as a single-host prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network %q: want CIDR such as 192.0.2.0/24", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("bad network %q: host bits set (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validLoginGlob reports whether a SASL login pattern is well formed.
func validLoginGlob(s string) error {
	if s == "" {
		return fmt.Errorf("empty login")
	}
	_, err := path.Match(s, "")
	return err
}

func (c *Config) validate(v *validator) {
	c.Milter.validate(v)
	c.Log.validate(v)
	c.Store.validate(v)
	c.Provider.validate(v)
	c.Unidentified.validate(v)
	c.validateChecks(v)
	c.validateResellers(v)
	c.validateCustomers(v)
	c.validateLocal(v)
	c.DNS.validate(v)
	c.Admin.validate(v)
	c.Directory.validate(v)
	c.Events.validate(v)
	c.Audit.validate(v)
	c.Reports.validate(v)
	c.Notifications.validate(v)
	c.Runtime.validate(v)
	c.Defaults.Limits.validate(v, "defaults.limits")
}

func (m *MilterConfig) validate(v *validator) {
	network, addr, ok := strings.Cut(m.Listen, ":")
	switch {
	case !ok || (network != "inet" && network != "inet6" && network != "unix") || addr == "":
		v.errf("milter.listen", "want inet:HOST:PORT or unix:PATH, got %q", m.Listen)
	case network == "unix":
		if !strings.HasPrefix(addr, "/") {
			v.errf("milter.listen", "unix: socket path %q must be absolute (an abstract or relative socket has no directory to keep other users out)", addr)
		}
	default:
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			v.errf("milter.listen", "bad address in %q: %v", m.Listen, err)
			break
		}
		if !isLoopback(host) && len(m.AllowedMTAs) == 0 {
			v.errf("milter.listen", "listening on non-loopback %q requires milter.allowed_mtas", host)
		}
	}
	for i, s := range m.AllowedMTAs {
		v.prefix(fmt.Sprintf("milter.allowed_mtas[%d]", i), s)
	}
	if len(m.AllowedPeers) == 0 {
		v.errf("milter.allowed_peers", "empty: no process could speak milter; list the MTA's user (postfix) or leave the key out")
	}
	for i, s := range m.AllowedPeers {
		if !validUnixName(s) {
			v.errf(fmt.Sprintf("milter.allowed_peers[%d]", i), "want a user name or a uid, got %q", s)
		}
	}
	if !validUnixName(m.SocketGroup) {
		v.errf("milter.socket_group", "want a group name, got %q", m.SocketGroup)
	}
	v.positive("milter.max_connections", m.MaxConnections)
	v.duration("milter.read_timeout", m.ReadTimeout)
	v.duration("milter.write_timeout", m.WriteTimeout)
	v.duration("milter.shutdown_timeout", m.ShutdownTimeout)
	v.duration("milter.decision_timeout", m.DecisionTimeout)
}

// validUnixName reports whether s can be a Unix user or group name (or a
// numeric id): letters, digits, '.', '_', '-', '$', not starting with '-'.
func validUnixName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-', r == '$':
		default:
			return false
		}
	}
	return true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (l *LogConfig) validate(v *validator) {
	if l.Format != "json" && l.Format != "text" {
		v.errf("log.format", "want json or text, got %q", l.Format)
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errf("log.level", "want debug, info, warn or error, got %q", l.Level)
	}
	if _, _, err := syslog.ParseAddress(l.Syslog.Address); err != nil {
		v.errf("log.syslog.address", "%v", err)
	}
	if _, ok := syslog.Facilities[l.Syslog.Facility]; !ok {
		v.errf("log.syslog.facility", "unknown facility %q (mail, daemon, user, local0 ... local7, ...)", l.Syslog.Facility)
	}
	if err := syslog.CheckTag(l.Syslog.Tag); err != nil {
		v.errf("log.syslog.tag", "%v", err)
	}
}

func (s *StoreConfig) validate(v *validator) {
	switch s.Backend {
	case "memory":
	case "redis":
		if len(s.Redis.Addrs) == 0 {
			v.errf("store.redis.addrs", "redis backend needs at least one address")
		}
		if s.Redis.MasterName != "" && s.Redis.Cluster {
			v.errf("store.redis.cluster", "cluster and master_name (Sentinel) exclude each other")
		}
	default:
		v.errf("store.backend", "want memory or redis, got %q", s.Backend)
	}
	v.allowed("store.on_error", s.OnError, policy.Defer, policy.Accept)
	v.duration("store.timeout", s.Timeout)
}

func (p *ProviderConfig) validate(v *validator) {
	for i, h := range p.Hostnames {
		v.domainPattern(fmt.Sprintf("provider.hostnames[%d]", i), h)
	}
	// networks and egress_ips are typed (Prefix, Addr): decoding placed
	// their errors.
}

func (u *UnidentifiedConfig) validate(v *validator) {
	v.allowed("unidentified.action", u.Action, policy.Reject, policy.Defer, policy.Accept)
	if u.Code != 0 || u.Enhanced != "" {
		v.reply("unidentified", u.Code, u.Enhanced, u.Text)
		if a, _ := u.Action.Get(); u.Code/100 == 4 && a == policy.Reject {
			v.errf("unidentified.code", "code %d is temporary but action is reject", u.Code)
		}
	}
}

func (c *Config) validateChecks(v *validator) {
	seen := map[string]bool{}
	for i, name := range c.Chain {
		p := fmt.Sprintf("chain[%d]", i)
		if !v.knownCheck(p, name) {
			continue
		}
		if seen[name] {
			v.errf(p, "check %q listed twice", name)
		}
		seen[name] = true
	}
	if v.opts.Specs != nil {
		for _, pr := range policy.CheckChain(c.Chain, policy.SpecIndex(v.opts.Specs)) {
			v.errf(fmt.Sprintf("chain[%d]", pr.Index), "%s", pr.Msg)
		}
	}
	for name, cc := range c.Checks {
		p := "checks." + name
		v.knownCheck(p, name)
		v.allowed(p+".on_error", cc.OnError, policy.Defer, policy.Accept)
		for f := range cc.Findings {
			v.knownFinding(p+".findings."+f, name, f)
		}
	}
}

// knownCheck reports whether name is a check the binary knows, recording
// an error at p (with the closest known name) when it is not.
func (v *validator) knownCheck(p, name string) bool {
	if v.opts.Checks == nil || contains(v.opts.Checks, name) {
		return true
	}
	msg := fmt.Sprintf("unknown check %q", name)
	if s := policy.Suggest(name, v.opts.Checks); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	} else {
		msg += fmt.Sprintf(" (known: %s)", strings.Join(v.opts.Checks, ", "))
	}
	v.errf(p, "%s", msg)
	return false
}

// knownFinding records an error at p when check does not declare the
// finding f, with the closest declared name.
func (v *validator) knownFinding(p, check, f string) {
	if v.opts.Specs == nil {
		return
	}
	spec, ok := policy.SpecIndex(v.opts.Specs)[check]
	if !ok {
		return // an unknown check is reported already
	}
	if _, ok := spec.Finding(f); ok {
		return
	}
	if f == policy.FindingError {
		v.errf(p, "%s is what a failing check reports; its action is set by on_error, not findings", f)
		return
	}
	names := spec.FindingNames()
	msg := fmt.Sprintf("check %q has no finding %q", check, f)
	switch s := policy.Suggest(f, names); {
	case s != "":
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	case len(names) == 0:
		msg += " (it reports no findings)"
	default:
		msg += fmt.Sprintf(" (its findings: %s)", strings.Join(names, ", "))
	}
	v.errf(p, "%s", msg)
}

func (c *Config) validateCustomers(v *validator) {
	switch c.Defaults.Mode {
	case "enforce", "monitor":
	default:
		v.errf("defaults.mode", "want enforce or monitor, got %q", c.Defaults.Mode)
	}
	// Sized once and free of per-item formatting: this loop runs over every
	// login of every customer (a million at the scale of docs/performance.md)
	// at start, at reload and at each change of the live directory.
	nLogins := 0
	for i := range c.Customers {
		nLogins += len(c.Customers[i].Logins)
	}
	ids := make(map[string]int, len(c.Customers))
	logins := make(map[string]string, nLogins)
	for i := range c.Customers {
		cu := &c.Customers[i]
		p := "customers[" + strconv.Itoa(i) + "]"
		if cu.ID == "" {
			v.errf(p+".id", "customer needs an id")
		} else if j, dup := ids[cu.ID]; dup {
			v.errf(p+".id", "id %q already used by customers[%d]", cu.ID, j)
		} else {
			ids[cu.ID] = i
		}
		if len(cu.ID) <= MaxIDLength {
			for _, r := range cu.ID {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
					v.errf(p+".id", "id %q: only letters, digits, '-', '_' and '.' are allowed", cu.ID)
					break
				}
			}
		}
		c.checkEntry(v, p, cu)
		c.validateCustomerReseller(v, p, cu)
		c.validateLoginLimits(v, p, cu)
		if cu.Mode != "" && cu.Mode != "enforce" && cu.Mode != "monitor" {
			v.errf(p+".mode", "want enforce or monitor, got %q", cu.Mode)
		}
		if len(cu.Logins) == 0 && len(cu.Networks) == 0 && len(cu.LocalUsers) == 0 && cu.ID != c.LocalSubmission.UnattributedCustomer() {
			v.errf(p, "customer %q has neither logins nor networks: no mail can be attributed to it", cu.ID)
		}
		for j, l := range cu.Logins {
			if mailaddr.CheckText(l) != nil {
				continue // reported by checkEntry
			}
			if strings.ContainsAny(l, "*?[\\") || l == "" {
				if err := validLoginGlob(l); err != nil {
					v.errf(fmt.Sprintf("%s.logins[%d]", p, j), "bad login pattern %q: %v", l, err)
				}
			}
			if other, dup := logins[l]; !dup {
				logins[l] = cu.ID
			} else if other != cu.ID {
				v.errf(fmt.Sprintf("%s.logins[%d]", p, j), "login %q also belongs to customer %q", l, other)
			}
		}
		for j, n := range cu.Networks {
			if mailaddr.CheckText(n) != nil {
				continue // reported by checkEntry
			}
			if _, err := ParsePrefix(n); err != nil {
				v.errf(fmt.Sprintf("%s.networks[%d]", p, j), "%v", err)
			}
		}
		if len(cu.Domains) == 0 {
			v.errf(p+".domains", "customer %q lists no sender domains", cu.ID)
		}
		for j, d := range cu.Domains {
			if mailaddr.CheckText(d) != nil {
				continue // reported by checkEntry
			}
			if _, err := mailaddr.ParsePattern(d); err != nil {
				v.errf(fmt.Sprintf("%s.domains[%d]", p, j), "bad domain %q: %v", d, err)
			}
		}
		for name, o := range cu.Checks {
			cp := p + ".checks." + name
			v.knownCheck(cp, name)
			for f := range o.Findings {
				v.knownFinding(cp+".findings."+f, name, f)
			}
		}
		cu.Limits.validate(v, p+".limits")
	}
	c.validateOverlaps(v)
}

// validateOverlaps applies the rules between customers' networks and
// domains (Claims): the very same network twice is refused; a network
// inside another customer's, a domain another customer has, a domain
// under another's wildcard are refused unless either entry is forced
// (then the longest prefix wins, and the overlap is a warning). Each
// pair is reported once, at the later entry.
func (c *Config) validateOverlaps(v *validator) {
	cl := NewClaims()
	for i := range c.Customers {
		cl.Add(&c.Customers[i], i)
	}
	for i := range c.Customers {
		for _, o := range cl.Overlaps(&c.Customers[i], nil, i) {
			p := "customers[" + strconv.Itoa(i) + "]." + o.Field
			if o.Forced {
				v.warnf(p, "%s", o.Message())
			} else {
				v.errf(p, "%s", o.Message())
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// WithCheckedCustomers returns a copy of c whose customers are list,
// validating nothing: every customer of list must have come out of
// WithCustomers on c (validated one by one, its defaults applied) and the
// caller must have checked the list's ids, logins and networks against
// each other (the live directory keeps ownership maps for that, so that a
// change costs the changed customer, not the directory).
func (c *Config) WithCheckedCustomers(list []Customer) *Config {
	cp := *c
	cp.root = nil
	cp.Customers = list
	return &cp
}

// WithCustomers returns a copy of c whose customers are list (the live
// directory: the file's customers merged with the store's), with the
// defaults applied and validated exactly like the customers section of
// the file. Errors name each field as customers[I].FIELD, I being the
// index in list; they carry no file line (list is not the file).
func (c *Config) WithCustomers(list []Customer, opts Options) (*Config, error) {
	cp := *c
	cp.root = nil
	cp.Customers = make([]Customer, len(list))
	copy(cp.Customers, list)
	for i := range cp.Customers {
		if cp.Customers[i].Mode == "" {
			cp.Customers[i].Mode = cp.Defaults.Mode
		}
	}
	v := &validator{cfg: &cp, opts: opts}
	cp.validateCustomers(v)
	cp.checkCustomers(v, cp.Customers, 0)
	cp.validateAbuseContacts(v)
	if len(v.errs) > 0 {
		for i := range v.errs {
			v.errs[i].File = ""
		}
		return nil, v.errs
	}
	// The file's warnings about other settings stay; those about
	// customers are the list's.
	cp.warnings = nil
	for _, w := range c.warnings {
		if !strings.HasPrefix(w.Path, "customers[") {
			cp.warnings = append(cp.warnings, w)
		}
	}
	for _, w := range v.warns {
		w.File = ""
		cp.warnings = append(cp.warnings, w)
	}
	return &cp, nil
}
