package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults of the reputation section.
const (
	// DefaultDeliveriesPoll is how often a followed delivery log is
	// checked for new lines and for rotation.
	DefaultDeliveriesPoll = 250 * time.Millisecond
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

// The outcomes of a bounce rate over act.
const (
	// BounceReport records the finding; mail goes on.
	BounceReport = "report"
	// BounceDeferBulk defers the customer's bulk mail (451 4.7.1).
	BounceDeferBulk = "defer_bulk"
	// BounceDeferAll defers all of the customer's mail.
	BounceDeferAll = "defer_all"
)

// ReputationConfig configures the reputation loop: delivery results read
// from Postfix's log (bounce rates per customer, check bounce_rate) and the
// blocklist watch of the provider's egress addresses.
type ReputationConfig struct {
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
	// default: provider.egress_ips when it holds exactly one address.
	Egress string `yaml:"egress"`
	// Transports maps the name a delivery agent logs under (syslog_name
	// and program, e.g. "postfix-ip2/smtp") to the egress address it binds
	// to (its smtp_bind_address in master.cf).
	Transports map[string]string `yaml:"transports"`
	// QueueIDTTL is how long an accepted message's queue id is remembered.
	QueueIDTTL time.Duration `yaml:"queue_id_ttl"`
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
	Outcome string `yaml:"outcome"`
	// Customers override these per customer id.
	Customers map[string]BounceOverride `yaml:"customers"`
}

// BounceOverride is one customer's own bounce settings; empty fields
// inherit.
type BounceOverride struct {
	Outcome   string   `yaml:"outcome"`
	Warn      *float64 `yaml:"warn"`
	Act       *float64 `yaml:"act"`
	MinVolume *int     `yaml:"min_volume"`
}

// DNSBLConfig is the blocklist watch.
type DNSBLConfig struct {
	// Zones are the DNS blocklists queried; none: no watcher.
	Zones []DNSBLZone `yaml:"zones"`
	// Addresses are the egress addresses watched; default provider.egress_ips.
	Addresses []string `yaml:"addresses"`
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
	// Zone is the DNS zone, e.g. zen.spamhaus.org.
	Zone string `yaml:"zone"`
	// Listed are the answers (A records) that mean "listed", as addresses
	// or ranges "127.0.0.2-127.0.0.11". Default for zen.spamhaus.org:
	// 127.0.0.2-127.0.0.11; otherwise 127.0.0.2-127.0.0.255.
	Listed []string `yaml:"listed"`
	// Errors are answers that mean the query was refused, not a listing
	// (Spamhaus: 127.255.255.252 typo, .254 public resolver, .255 too
	// many queries). Default 127.255.255.0-127.255.255.255.
	Errors []string `yaml:"errors"`
}

// IPRange is an inclusive range of addresses of one family.
type IPRange struct{ From, To netip.Addr }

// Contains reports whether a is in the range.
func (r IPRange) Contains(a netip.Addr) bool {
	return a.BitLen() == r.From.BitLen() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
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

// Spamhaus ZEN's documented return codes: 127.0.0.2 SBL, .3 CSS, .4-.7 XBL, .9 DROP, .10-.11 PBL; 127.255.255.x are
// error codes, not listings.
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
// its transports entry, else Egress.
func (d *DeliveriesConfig) EgressFor(program string) string {
	if e, ok := d.Transports[program]; ok {
		return e
	}
	return d.Egress
}

func (r *ReputationConfig) defaults(p *ProviderConfig) {
	d := &r.Deliveries
	if d.Poll == 0 {
		d.Poll = DefaultDeliveriesPoll
	}
	if d.QueueIDTTL == 0 {
		d.QueueIDTTL = DefaultQueueIDTTL
	}
	if d.Egress == "" && len(p.EgressIPs) == 1 {
		d.Egress = p.EgressIPs[0].String()
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
	if len(l.Addresses) == 0 {
		for _, a := range p.EgressIPs {
			l.Addresses = append(l.Addresses, a.String())
		}
	}
	for i := range l.Zones {
		l.Zones[i].defaults()
	}
}

func validOutcome(s string) bool {
	return s == BounceReport || s == BounceDeferBulk || s == BounceDeferAll
}

func (v *validator) rate(p string, r float64) {
	if r <= 0 || r > 1 {
		v.errf(p, "want a rate above 0 and at most 1 (0.05 = 5%%), got %v", r)
	}
}

func (r *ReputationConfig) validate(v *validator) {
	d := r.Deliveries
	v.duration("reputation.deliveries.poll", d.Poll)
	v.duration("reputation.deliveries.queue_id_ttl", d.QueueIDTTL)
	if d.Egress != "" {
		if _, err := netip.ParseAddr(d.Egress); err != nil {
			v.errf("reputation.deliveries.egress", "want an IP address, got %q", d.Egress)
		}
	}
	for k, a := range d.Transports {
		if _, err := netip.ParseAddr(a); err != nil {
			v.errf("reputation.deliveries.transports."+k, "want an IP address, got %q", a)
		}
		if k == "" || strings.ContainsAny(k, " \t:[]") {
			v.errf("reputation.deliveries.transports."+k, "want a log name such as postfix-ip2/smtp, got %q", k)
		}
	}
	b := r.Bounces
	if b.Window < time.Hour {
		v.errf("reputation.bounces.window", "must be at least 1h (hourly counters), got %s", b.Window)
	}
	v.positive("reputation.bounces.min_volume", b.MinVolume)
	v.rate("reputation.bounces.warn", b.Warn)
	v.rate("reputation.bounces.act", b.Act)
	if b.Warn > b.Act {
		v.errf("reputation.bounces.warn", "warn (%v) is above act (%v)", b.Warn, b.Act)
	}
	if !validOutcome(b.Outcome) {
		v.errf("reputation.bounces.outcome", "want report, defer_bulk or defer_all, got %q", b.Outcome)
	}
	ids := map[string]bool{}
	for _, c := range v.cfg.Customers {
		ids[c.ID] = true
	}
	for id, o := range b.Customers {
		p := "reputation.bounces.customers." + id
		if !ids[id] {
			v.errf(p, "no customer %q in customers", id)
		}
		if o.Outcome != "" && !validOutcome(o.Outcome) {
			v.errf(p+".outcome", "want report, defer_bulk or defer_all, got %q", o.Outcome)
		}
		if o.Warn != nil {
			v.rate(p+".warn", *o.Warn)
		}
		if o.Act != nil {
			v.rate(p+".act", *o.Act)
		}
		if o.MinVolume != nil {
			v.positive(p+".min_volume", *o.MinVolume)
		}
	}
	l := r.DNSBL
	if l.Interval < time.Second {
		v.errf("reputation.dnsbl.interval", "must be at least 1s, got %s", l.Interval)
	}
	v.duration("reputation.dnsbl.report_window", l.ReportWindow)
	v.positive("reputation.dnsbl.top", l.Top)
	v.positive("reputation.dnsbl.history", l.History)
	for i, a := range l.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			v.errf(fmt.Sprintf("reputation.dnsbl.addresses[%d]", i), "want an IP address, got %q", a)
		}
	}
	seen := map[string]bool{}
	for i, z := range l.Zones {
		p := fmt.Sprintf("reputation.dnsbl.zones[%d]", i)
		if z.Zone == "" || strings.ContainsAny(z.Zone, " \t/\\") || strings.Contains(z.Zone, "..") {
			v.errf(p+".zone", "want a DNS zone such as zen.spamhaus.org, got %q", z.Zone)
		}
		if seen[z.Zone] {
			v.errf(p+".zone", "zone %q listed twice", z.Zone)
		}
		seen[z.Zone] = true
		for j, s := range z.Listed {
			if _, err := ParseIPRange(s); err != nil {
				v.errf(fmt.Sprintf("%s.listed[%d]", p, j), "%v", err)
			}
		}
		for j, s := range z.Errors {
			if _, err := ParseIPRange(s); err != nil {
				v.errf(fmt.Sprintf("%s.errors[%d]", p, j), "%v", err)
			}
		}
	}
	if len(l.Zones) > 0 && len(l.Addresses) == 0 {
		v.errf("reputation.dnsbl.addresses", "no egress address to watch: set reputation.dnsbl.addresses or provider.egress_ips")
	}
}
