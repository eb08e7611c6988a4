package config

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Defaults of the dns section.
const (
	// DefaultDNSTimeout bounds one lookup (all upstreams, retries
	// included). It stays below milter.decision_timeout so that a slow DNS
	// becomes a "451 4.4.3" of its own and not a generic timeout.
	DefaultDNSTimeout = time.Second
	// DefaultDNSMaxTTL caps the time an answer is cached, whatever its TTL.
	DefaultDNSMaxTTL = time.Hour
	// DefaultDNSNegativeTTL caps the time a negative answer (NXDOMAIN,
	// NODATA) is cached; RFC 2308 §5 recommends one to three hours at most,
	// a gateway wants a customer's DNS fix seen sooner.
	DefaultDNSNegativeTTL = 5 * time.Minute
	// DefaultDNSCacheSize is the number of cached questions.
	DefaultDNSCacheSize = 20000
)

// DNSConfig configures the caching resolver shared by all checks.
type DNSConfig struct {
	// Servers are the upstream recursive resolvers, "HOST" or "HOST:PORT"
	// (port 53 by default), tried in order. Empty: the nameservers of
	// /etc/resolv.conf.
	Servers []string `yaml:"servers"`
	// Timeout bounds one lookup, every server and retry included.
	Timeout time.Duration `yaml:"timeout"`
	// MaxTTL caps how long a positive answer is cached.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// NegativeTTL caps how long a negative answer is cached (its own TTL
	// is the SOA minimum, RFC 2308 §5).
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// CacheSize is the number of questions kept; the least recently used
	// goes first.
	CacheSize int `yaml:"cache_size"`
}

func (d *DNSConfig) defaults() {
	if d.Timeout == 0 {
		d.Timeout = DefaultDNSTimeout
	}
	if d.MaxTTL == 0 {
		d.MaxTTL = DefaultDNSMaxTTL
	}
	if d.NegativeTTL == 0 {
		d.NegativeTTL = DefaultDNSNegativeTTL
	}
	if d.CacheSize == 0 {
		d.CacheSize = DefaultDNSCacheSize
	}
}

func (d *DNSConfig) validate(v *validator) {
	for i, s := range d.Servers {
		if _, err := ServerAddr(s); err != nil {
			v.errf(fmt.Sprintf("dns.servers[%d]", i), "%v", err)
		}
	}
	v.duration("dns.timeout", d.Timeout)
	v.duration("dns.max_ttl", d.MaxTTL)
	v.duration("dns.negative_ttl", d.NegativeTTL)
	v.positive("dns.cache_size", d.CacheSize)
	if d.Timeout > 0 && d.Timeout >= v.cfg.Milter.DecisionTimeout {
		v.errf("dns.timeout", "%s must be shorter than milter.decision_timeout (%s), or a slow DNS server makes every decision time out", d.Timeout, v.cfg.Milter.DecisionTimeout)
	}
}

// ServerAddr turns a dns.servers entry ("192.0.2.53", "[2001:db8::53]:5353",
// "192.0.2.53:53") into HOST:PORT. Only addresses are accepted: resolving
// a server's name would need a resolver.
func ServerAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("bad DNS server %q: want an IP address, optionally with :PORT", s)
	}
	return ap.String(), nil
}
