package reputation

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// Defaults of the reputation: section.
const (
	// DefaultDeliveriesPoll is how often a followed delivery log is
	// checked for new lines and for rotation.
	DefaultDeliveriesPoll = 250 * time.Millisecond
	// DefaultDeliveriesMaxLag is how far behind the delivery-log reader
	// may fall before /readyz calls it degraded.
	DefaultDeliveriesMaxLag = 5 * time.Minute
	// DefaultQueueIDTTL is how long the queue id of an accepted message is
	// remembered: Postfix's maximal_queue_lifetime (5d) and a margin.
	DefaultQueueIDTTL = 6 * 24 * time.Hour
	// DefaultBounceWindow is the rolling window of the bounce rate.
	DefaultBounceWindow = 24 * time.Hour
	// DefaultBounceMinVolume is the number of final delivery results below
	// which no bounce rate is judged.
	DefaultBounceMinVolume = 100
	// DefaultBounceWarn and DefaultBounceAct are modelled on what large
	// senders publish (Amazon SES reviews an account at 5% and may pause
	// it at 10%).
	DefaultBounceWarn = 0.05
	DefaultBounceAct  = 0.10
	// DefaultBounceOutcome defers the bulk mail of a customer over act.
	DefaultBounceOutcome = BounceDeferBulk
	// DefaultDNSBLInterval is how often each egress address is queried.
	DefaultDNSBLInterval = 5 * time.Minute
	// DefaultDNSBLReportWindow is the window before a listing whose
	// senders the listing report ranks.
	DefaultDNSBLReportWindow = 24 * time.Hour
	// DefaultDNSBLTop is the number of senders in the listing report.
	DefaultDNSBLTop = 10
	// DefaultDNSBLHistory is how many state changes are kept per address
	// and zone.
	DefaultDNSBLHistory = 50
)

// Outcome is what a bounce rate over act does to the customer's mail.
type Outcome string

// The outcomes of a bounce rate over act.
const (
	// BounceReport records the finding; mail goes on.
	BounceReport Outcome = "report"
	// BounceDeferBulk defers the customer's bulk mail (451 4.7.1).
	BounceDeferBulk Outcome = "defer_bulk"
	// BounceDeferAll defers all of the customer's mail.
	BounceDeferAll Outcome = "defer_all"
)

// Valid reports whether o is one of the outcomes.
func (o Outcome) Valid() bool {
	return o == BounceReport || o == BounceDeferBulk || o == BounceDeferAll
}

// Config is the reputation: section of the config, which this package
// owns: the delivery results read from Postfix's log (bounce rates per
// customer, check bounce_rate) and the blocklist watch of the provider's
// egress addresses (provider.egress_ips by default).
type Config struct {
	Deliveries DeliveriesConfig `yaml:"deliveries"`
	Bounces    BouncesConfig    `yaml:"bounces"`
	DNSBL      DNSBLConfig      `yaml:"dnsbl"`
}

// DeliveriesConfig is the delivery-log reader.
type DeliveriesConfig struct {
	// Source is the Postfix log file to follow (rotation-safe), "-" for
	// standard input (e.g. `journalctl -f -o cat -u postfix | aupguard
	// serve ...`), or empty: no reader.
	Source string `yaml:"source"`
	// FromStart reads a followed file from its beginning at start instead
	// of from its end (results already counted are not counted twice).
	FromStart bool `yaml:"from_start"`
	// Poll is how often the file is checked for new lines and rotation.
	Poll time.Duration `yaml:"poll"`
	// Egress is the address receivers see this MTA's deliveries come from;
	// default: provider.egress_ips when it holds exactly one address. The
	// zero Addr: unknown.
	Egress config.Addr `yaml:"egress,omitempty"`
	// Transports maps the name a delivery agent logs under (syslog_name
	// and program, e.g. "postfix-ip2/smtp") to the egress address it binds
	// to (its smtp_bind_address in master.cf).
	Transports map[string]config.Addr `yaml:"transports,omitempty"`
	// QueueIDTTL is how long an accepted message's queue id is remembered.
	QueueIDTTL time.Duration `yaml:"queue_id_ttl"`
	// AddressFormat is Postfix's info_log_address_format: external (the
	// default since Postfix 3.5) or internal (before 3.5, or set so).
	AddressFormat AddressFormat `yaml:"address_format"`
	// SyslogNames are the syslog_name values of the Postfix instances
	// whose delivery agents are believed ("postfix" matches postfix/smtp
	// and postfix/relay/smtp); a delivery line logged under any other
	// program name is ignored and counted. Transports' names are believed
	// too.
	SyslogNames []string `yaml:"syslog_names"`
	// MaxLag is how far behind (time since it last had read everything
	// written) the reader may fall before /readyz calls it degraded.
	MaxLag time.Duration `yaml:"max_lag"`
}

// deliveryAgents are the Postfix programs that log delivery results.
var deliveryAgents = map[string]bool{
	"smtp": true, "lmtp": true, "local": true, "virtual": true, "pipe": true,
	"error": true, "retry": true, "discard": true,
}

// TrustedProgram reports whether a delivery line logged by program comes
// from a delivery agent of a configured Postfix instance: NAME/AGENT with
// NAME one of SyslogNames (or below one: postfix/relay) and AGENT a
// Postfix delivery agent, or a transports name.
func (d *DeliveriesConfig) TrustedProgram(program string) bool {
	if _, ok := d.Transports[program]; ok {
		return true
	}
	i := strings.LastIndexByte(program, '/')
	if i <= 0 || !deliveryAgents[program[i+1:]] {
		return false
	}
	name := program[:i]
	for _, n := range d.SyslogNames {
		if name == n || strings.HasPrefix(name, n+"/") {
			return true
		}
	}
	return false
}

// BouncesConfig is the bounce rate judged by the bounce_rate check.
type BouncesConfig struct {
	// Window is the rolling window of the rate.
	Window time.Duration `yaml:"window"`
	// MinVolume is the number of final results (sent and bounced) in the
	// window below which the rate is not judged.
	MinVolume int `yaml:"min_volume"`
	// Warn and Act are rates (0.05 = 5%) of hard bounces (unknown
	// recipients) among final results; exceeding them is a finding.
	Warn float64 `yaml:"warn"`
	Act  float64 `yaml:"act"`
	// Outcome over act: report, defer_bulk or defer_all.
	Outcome Outcome `yaml:"outcome"`
	// Customers override these per customer id.
	Customers map[string]BounceOverride `yaml:"customers,omitempty"`
}

// BounceOverride is one customer's own bounce settings; empty fields
// inherit.
type BounceOverride struct {
	Outcome   Outcome  `yaml:"outcome,omitempty"`
	Warn      *float64 `yaml:"warn,omitempty"`
	Act       *float64 `yaml:"act,omitempty"`
	MinVolume *int     `yaml:"min_volume,omitempty"`
}

// DNSBLConfig is the blocklist watch.
type DNSBLConfig struct {
	// Zones are the DNS blocklists queried; none: no watcher.
	Zones []DNSBLZone `yaml:"zones"`
	// Addresses are the egress addresses watched; default provider.egress_ips.
	Addresses []config.Addr `yaml:"addresses"`
	// Interval between two queries of one address in one zone.
	Interval time.Duration `yaml:"interval"`
	// ReportWindow is the period before a listing whose senders through
	// the listed address the listing report ranks.
	ReportWindow time.Duration `yaml:"report_window"`
	// Top is the number of senders in the listing report.
	Top int `yaml:"top"`
	// History is the number of state changes kept per address and zone.
	History int `yaml:"history"`
}

// DNSBLZone is one blocklist and the meaning of its answers.
type DNSBLZone struct {
	// Zone is the DNS zone, e.g. zen.spamhaus.org (lower case, without
	// the final dot).
	Zone string `yaml:"zone"`
	// Listed are the answers (A records) that mean "listed", as addresses
	// or ranges "127.0.0.2-127.0.0.11", as the config writes them. Default
	// for zen.spamhaus.org: 127.0.0.2-127.0.0.11; otherwise
	// 127.0.0.2-127.0.0.255.
	Listed []string `yaml:"listed"`
	// Errors are answers that mean the query was refused, not a listing
	// (Spamhaus: 127.255.255.252 typo, .254 public resolver, .255 too
	// many queries), as the config writes them. Default
	// 127.255.255.0-127.255.255.255.
	Errors []string `yaml:"errors"`
	// ListedRanges and ErrorRanges are Listed and Errors parsed once, when
	// the section is decoded (each error placed at its entry).
	ListedRanges []IPRange `yaml:"-"`
	ErrorRanges  []IPRange `yaml:"-"`
}

// IPRange is an inclusive range of addresses of one family.
type IPRange struct{ From, To netip.Addr }

// Contains reports whether a is in the range.
func (r IPRange) Contains(a netip.Addr) bool {
	return a.BitLen() == r.From.BitLen() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// String renders the range as ParseIPRange reads it.
func (r IPRange) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// ParseIPRange parses "A" or "A-B".
func ParseIPRange(s string) (IPRange, error) {
	from, to, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := netip.ParseAddr(strings.TrimSpace(from))
	if err != nil {
		return IPRange{}, fmt.Errorf("bad address range %q: %v", s, err)
	}
	b := a
	if isRange {
		if b, err = netip.ParseAddr(strings.TrimSpace(to)); err != nil {
			return IPRange{}, fmt.Errorf("bad address range %q: %v", s, err)
		}
	}
	a, b = a.Unmap(), b.Unmap()
	if a.BitLen() != b.BitLen() || b.Compare(a) < 0 {
		return IPRange{}, fmt.Errorf("bad address range %q: the end is before the start or of another family", s)
	}
	return IPRange{From: a, To: b}, nil
}

// Spamhaus ZEN's documented return codes: 127.0.0.2 SBL, .3 CSS, .4-.7
// XBL, .9 DROP, .10-.11 PBL; 127.255.255.x are error codes, not listings.
var zenListed = []string{"127.0.0.2-127.0.0.11"}

func (z *DNSBLZone) defaults() {
	z.Zone = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(z.Zone)), ".")
	if len(z.Listed) == 0 {
		if z.Zone == "zen.spamhaus.org" || strings.HasSuffix(z.Zone, ".zen.dq.spamhaus.net") {
			z.Listed = append([]string(nil), zenListed...)
		} else {
			z.Listed = []string{"127.0.0.2-127.0.0.255"}
		}
	}
	if len(z.Errors) == 0 {
		z.Errors = []string{"127.255.255.0-127.255.255.255"}
	}
}

// EgressFor returns the egress address of a delivery agent's log name:
// its transports entry, else Egress; "" when unknown.
func (d *DeliveriesConfig) EgressFor(program string) string {
	if e, ok := d.Transports[program]; ok {
		return e.String()
	}
	if !d.Egress.IsValid() {
		return ""
	}
	return d.Egress.String()
}

// Section is the reputation: section, decoded and validated here.
var Section = config.SectionSpec{Key: "reputation", Decode: decodeConfig}

// DefaultConfig is the reputation: section when the config leaves it out
// and names no egress address (provider.egress_ips fills in the egress
// defaults at decode).
func DefaultConfig() *Config {
	r := &Config{}
	r.defaults(nil)
	return r
}

// defaults fills in every setting the config left out (or set to zero);
// p, when set, gives the egress addresses.
func (r *Config) defaults(p *config.ProviderConfig) {
	d := &r.Deliveries
	if d.Poll == 0 {
		d.Poll = DefaultDeliveriesPoll
	}
	if d.QueueIDTTL == 0 {
		d.QueueIDTTL = DefaultQueueIDTTL
	}
	if d.AddressFormat == "" {
		d.AddressFormat = External
	}
	if len(d.SyslogNames) == 0 {
		d.SyslogNames = []string{"postfix"}
	}
	if d.MaxLag == 0 {
		d.MaxLag = DefaultDeliveriesMaxLag
	}
	if p != nil && !d.Egress.IsValid() && len(p.EgressIPs) == 1 {
		d.Egress = p.EgressIPs[0]
	}
	b := &r.Bounces
	if b.Window == 0 {
		b.Window = DefaultBounceWindow
	}
	if b.MinVolume == 0 {
		b.MinVolume = DefaultBounceMinVolume
	}
	if b.Warn == 0 {
		b.Warn = DefaultBounceWarn
	}
	if b.Act == 0 {
		b.Act = DefaultBounceAct
	}
	if b.Outcome == "" {
		b.Outcome = DefaultBounceOutcome
	}
	l := &r.DNSBL
	if l.Interval == 0 {
		l.Interval = DefaultDNSBLInterval
	}
	if l.ReportWindow == 0 {
		l.ReportWindow = DefaultDNSBLReportWindow
	}
	if l.Top == 0 {
		l.Top = DefaultDNSBLTop
	}
	if l.History == 0 {
		l.History = DefaultDNSBLHistory
	}
	if p != nil && len(l.Addresses) == 0 {
		l.Addresses = append([]config.Addr(nil), p.EgressIPs...)
	}
	for i := range l.Zones {
		l.Zones[i].defaults()
	}
}

// rate reports at p a rate outside (0, 1].
func rate(s *config.Section, p string, r float64) {
	if r <= 0 || r > 1 {
		s.Errorf(p, "want a rate above 0 and at most 1 (0.05 = 5%%), got %v", r)
	}
}

// decodeConfig decodes the reputation: section over its defaults, fills
// in the egress addresses from provider.egress_ips, parses the zones'
// answer ranges and validates it; errors are placed through s.
func decodeConfig(s *config.Section) any {
	r := DefaultConfig()
	s.Decode(r)
	r.defaults(&s.Config.Provider)

	d := r.Deliveries
	s.Duration("reputation.deliveries.poll", d.Poll)
	s.Duration("reputation.deliveries.queue_id_ttl", d.QueueIDTTL)
	s.Duration("reputation.deliveries.max_lag", d.MaxLag)
	if d.AddressFormat != External && d.AddressFormat != Internal {
		s.Errorf("reputation.deliveries.address_format", "want external or internal (Postfix's info_log_address_format), got %q", d.AddressFormat)
	}
	for i, n := range d.SyslogNames {
		if n == "" || strings.HasSuffix(n, "/") || strings.ContainsAny(n, " \t:[]") {
			s.Errorf(fmt.Sprintf("reputation.deliveries.syslog_names[%d]", i), "want a Postfix syslog_name such as postfix or postfix-ip2, got %q", n)
		}
	}
	// egress and the transports' addresses are config.Addr: a bad one was
	// reported, at its line, when it was decoded; a null one decodes to
	// no address (for egress: unset, the default applies).
	for k, a := range d.Transports {
		if k == "" || strings.ContainsAny(k, " \t:[]") {
			s.Errorf("reputation.deliveries.transports."+k, "want a log name such as postfix-ip2/smtp, got %q", k)
		}
		if !a.IsValid() {
			s.Errorf("reputation.deliveries.transports."+k, "want an IP address, got none")
		}
	}
	b := r.Bounces
	if b.Window < time.Hour {
		s.Errorf("reputation.bounces.window", "must be at least 1h (hourly counters), got %s", b.Window)
	}
	s.Positive("reputation.bounces.min_volume", b.MinVolume)
	rate(s, "reputation.bounces.warn", b.Warn)
	rate(s, "reputation.bounces.act", b.Act)
	if b.Warn > b.Act {
		s.Errorf("reputation.bounces.warn", "warn (%v) is above act (%v)", b.Warn, b.Act)
	}
	if !b.Outcome.Valid() {
		s.Errorf("reputation.bounces.outcome", "want report, defer_bulk or defer_all, got %q", b.Outcome)
	}
	ids := map[string]bool{}
	for _, c := range s.Config.Customers {
		ids[c.ID] = true
	}
	for id, o := range b.Customers {
		p := "reputation.bounces.customers." + id
		if !ids[id] {
			s.Errorf(p, "no customer %q in customers", id)
		}
		if o.Outcome != "" && !o.Outcome.Valid() {
			s.Errorf(p+".outcome", "want report, defer_bulk or defer_all, got %q", o.Outcome)
		}
		if o.Warn != nil {
			rate(s, p+".warn", *o.Warn)
		}
		if o.Act != nil {
			rate(s, p+".act", *o.Act)
		}
		if o.MinVolume != nil {
			s.Positive(p+".min_volume", *o.MinVolume)
		}
	}
	l := &r.DNSBL
	if l.Interval < time.Second {
		s.Errorf("reputation.dnsbl.interval", "must be at least 1s, got %s", l.Interval)
	}
	s.Duration("reputation.dnsbl.report_window", l.ReportWindow)
	s.Positive("reputation.dnsbl.top", l.Top)
	s.Positive("reputation.dnsbl.history", l.History)
	seen := map[string]bool{}
	for i := range l.Zones {
		z := &l.Zones[i]
		p := fmt.Sprintf("reputation.dnsbl.zones[%d]", i)
		if z.Zone == "" || strings.ContainsAny(z.Zone, " \t/\\") || strings.Contains(z.Zone, "..") {
			s.Errorf(p+".zone", "want a DNS zone such as zen.spamhaus.org, got %q", z.Zone)
		}
		if seen[z.Zone] {
			s.Errorf(p+".zone", "zone %q listed twice", z.Zone)
		}
		seen[z.Zone] = true
		z.ListedRanges = parseRanges(s, p+".listed", z.Listed)
		z.ErrorRanges = parseRanges(s, p+".errors", z.Errors)
	}
	if len(l.Zones) > 0 && len(l.Addresses) == 0 {
		s.Errorf("reputation.dnsbl.addresses", "no egress address to watch: set reputation.dnsbl.addresses or provider.egress_ips")
	}
	return r
}

// parseRanges parses the answer ranges of a zone, reporting each bad one
// at p[j].
func parseRanges(s *config.Section, p string, list []string) []IPRange {
	out := make([]IPRange, 0, len(list))
	for j, str := range list {
		rg, err := ParseIPRange(str)
		if err != nil {
			s.Errorf(fmt.Sprintf("%s[%d]", p, j), "%v", err)
			continue
		}
		out = append(out, rg)
	}
	return out
}

// ConfigOf returns the reputation: section of cfg (decoded at
// config.Parse, or now for a config parsed without this package's
// section).
func ConfigOf(cfg *config.Config) (*Config, error) {
	v, err := cfg.SectionOf(Section)
	r, _ := v.(*Config)
	if r == nil {
		r = DefaultConfig()
	}
	return r, err
}
