package links

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver is what the lookups need of the provider's resolver
// (internal/resolver.Cache satisfies it, with its cache and de-duplication
// of identical questions in flight).
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Kind says how a zone is asked and how its answers read.
type Kind string

// The kinds of zone.
const (
	// KindDBL is a Spamhaus DBL-style domain list: 127.0.1.2-127.0.1.254
	// are listings (the last octet says why); 127.0.1.255 (IP queries
	// prohibited) and 127.255.255.252/.254/.255 (typo in the zone name,
	// query through a public resolver, too many queries) are errors.
	KindDBL Kind = "dbl"
	// KindSURBL is a SURBL multi-style domain list: 127.0.0.X, each bit
	// of X a list (8 phishing, 16 malware, 64 abuse, 128 cracked);
	// 127.0.0.1 means the query was refused (an error).
	KindSURBL Kind = "surbl"
	// KindURIBL is a URIBL multi-style domain list: 127.0.0.X, bits 2
	// black, 4 grey, 8 red; 127.0.0.1 means the query was refused (an
	// error).
	KindURIBL Kind = "uribl"
	// KindIP is an IP list asked about IP-literal URLs, with reversed
	// octets (IPv4) or nibbles (IPv6) as Spamhaus ZEN (RFC 5782 §2.1,
	// §2.4): 127.0.0.2-127.0.0.9 are listings (SBL, CSS, XBL, DROP);
	// 127.0.0.10-11 (PBL, end-user ranges) are not listings of a web
	// host; 127.255.255.x are errors.
	KindIP Kind = "ip"
)

// Default bit masks of the bit-field kinds.
const (
	// DefaultSURBLMask counts phishing, malware, abuse and cracked.
	DefaultSURBLMask = 8 | 16 | 64 | 128
	// DefaultURIBLMask counts black only (grey and red are weaker).
	DefaultURIBLMask = 2
)

// Defaults of Config.
const (
	DefaultMaxLookups  = 20
	DefaultConcurrency = 4
	DefaultTimeout     = 3 * time.Second
)

// Zone is one configured blocklist.
type Zone struct {
	// Zone is the list's DNS zone, e.g. dbl.spamhaus.org.
	Zone string
	// Kind is how it is asked and read.
	Kind Kind
	// Mask, for KindSURBL and KindURIBL, is the bits of the answer that
	// count as listed; 0 means the kind's default.
	Mask uint8
}

// Config is the lookups' configuration.
type Config struct {
	// Zones in the order they are asked; a listing in an earlier zone
	// comes first.
	Zones []Zone
	// MaxLookups bounds the DNS lookups per message, over all hosts and
	// zones: the hosts first named in the message are asked first; the
	// rest are counted in Result.NotChecked. 0 means DefaultMaxLookups.
	MaxLookups int
	// Concurrency is how many lookups run at once. 0 means
	// DefaultConcurrency.
	Concurrency int
	// Timeout bounds all the lookups of one message together. 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Lists asks the configured blocklists about a message's hosts. It is
// safe for concurrent use.
type Lists struct {
	cfg Config
	r   Resolver
}

// NewLists checks cfg and returns the Lists asking through r. Every
// problem of cfg is in the error, one per line.
func NewLists(cfg Config, r Resolver) (*Lists, error) {
	var errs []error
	if r == nil {
		errs = append(errs, errors.New("no resolver"))
	}
	if cfg.MaxLookups < 0 || cfg.Concurrency < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("max_lookups, concurrency and timeout must not be negative"))
	}
	zones := make([]Zone, 0, len(cfg.Zones))
	for i, z := range cfg.Zones {
		z.Zone = strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(z.Zone)), "."), ".")
		if !validName(z.Zone) {
			errs = append(errs, fmt.Errorf("zones[%d]: %q is not a DNS zone name", i, z.Zone))
		}
		switch z.Kind {
		case KindDBL, KindIP:
			if z.Mask != 0 {
				errs = append(errs, fmt.Errorf("zones[%d] (%s): mask applies to kinds surbl and uribl only", i, z.Zone))
			}
		case KindSURBL:
			if z.Mask == 0 {
				z.Mask = DefaultSURBLMask
			}
			if z.Mask&1 != 0 {
				errs = append(errs, fmt.Errorf("zones[%d] (%s): mask bit 1 is the zone's query-refused code, not a list", i, z.Zone))
			}
		case KindURIBL:
			if z.Mask == 0 {
				z.Mask = DefaultURIBLMask
			}
			if z.Mask&1 != 0 {
				errs = append(errs, fmt.Errorf("zones[%d] (%s): mask bit 1 is the zone's query-refused code, not a list", i, z.Zone))
			}
		default:
			errs = append(errs, fmt.Errorf("zones[%d] (%s): kind %q is none of dbl, surbl, uribl, ip", i, z.Zone, z.Kind))
		}
		zones = append(zones, z)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.Zones = zones
	if cfg.MaxLookups == 0 {
		cfg.MaxLookups = DefaultMaxLookups
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Lists{cfg: cfg, r: r}, nil
}

// Listing is one host found on one list.
type Listing struct {
	// Domain is the registrable domain or the IP address looked up.
	Domain string
	// Zone is the list that lists it.
	Zone string
	// Kind is the zone's kind.
	Kind Kind
	// Code is the answer (e.g. 127.0.1.4).
	Code string
	// Meaning is what the list publishes for the code (e.g. "phish
	// domain", "phishing+malware").
	Meaning string
	// URL is the first URL of the message naming the host (cut).
	URL string
}

// LookupError is a lookup that said nothing about its host: a failed
// query (timeout, SERVFAIL), an error code of the list (query refused,
// public resolver, rate limit) or an answer the list does not document.
type LookupError struct {
	Domain, Zone string
	// Code is the error code answered, if any.
	Code string
	Err  string
}

// Result is what the lookups of one message found.
type Result struct {
	// Listings in message order (the host first named first), then zone
	// order: Listings[0] is the one to name in a reply.
	Listings []Listing
	// Errors in the same order.
	Errors []LookupError
	// Lookups is the number of DNS lookups made (at most MaxLookups).
	Lookups int
	// Answered is the number of lookups the lists answered (listed or
	// not); Lookups - Answered failed or were error codes. A check can
	// tell "every list failed" (Answered == 0, Errors not empty)
	// from "nothing listed".
	Answered int
	// NotChecked counts (host, zone) pairs left unasked by MaxLookups.
	NotChecked int
}

// Listed reports whether any host is listed.
func (r Result) Listed() bool { return len(r.Listings) > 0 }

// Answer is how a zone's answer reads.
type Answer struct {
	// Listed is set when the answer is a listing.
	Listed bool
	// Code is the answer that decided (a listing or an error code).
	Code string
	// Meaning is the code's published meaning.
	Meaning string
	// Err is set when the answer is an error code or undocumented: it
	// says nothing about the host.
	Err string
}

type job struct {
	host Host
	zone Zone
	name string
}

// Check asks the zones about hosts (in order) within the configured
// bounds. Domain zones are asked about names, KindIP zones about IP
// literals. Lookups run concurrently (Config.Concurrency at once) under one
// deadline (Config.Timeout, or ctx's if earlier); a lookup the deadline
// cuts is an error. The order of the result does not depend on which
// lookup answered first.
func (l *Lists) Check(ctx context.Context, hosts []Host) Result {
	var res Result
	var jobs []job
	for _, h := range hosts {
		for _, z := range l.cfg.Zones {
			if (z.Kind == KindIP) != h.IsIP() {
				continue
			}
			if len(jobs) >= l.cfg.MaxLookups {
				res.NotChecked++
				continue
			}
			jobs = append(jobs, job{host: h, zone: z, name: queryName(h, z.Zone)})
		}
	}
	if len(jobs) == 0 {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	answers := make([]Answer, len(jobs))
	asked := make([]bool, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	workers := min(l.cfg.Concurrency, len(jobs))
	for range workers {
		wg.Go(func() {
			for i := range next {
				asked[i] = true
				answers[i] = l.lookup(ctx, jobs[i])
			}
		})
	}
feed:
	for i := range jobs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for i, j := range jobs {
		a := answers[i]
		if !asked[i] {
			a = Answer{Err: "not asked: " + ctx.Err().Error()}
		} else {
			res.Lookups++
		}
		if asked[i] && a.Err == "" {
			res.Answered++
		}
		switch {
		case a.Listed:
			res.Listings = append(res.Listings, Listing{Domain: j.host.Name, Zone: j.zone.Zone, Kind: j.zone.Kind, Code: a.Code, Meaning: a.Meaning, URL: j.host.URL})
		case a.Err != "":
			res.Errors = append(res.Errors, LookupError{Domain: j.host.Name, Zone: j.zone.Zone, Code: a.Code, Err: a.Err})
		}
	}
	return res
}

func (l *Lists) lookup(ctx context.Context, j job) Answer {
	ips, err := l.r.LookupIPAddr(ctx, j.name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return Answer{}
		}
		if ctx.Err() != nil {
			return Answer{Err: "query " + j.name + ": " + ctx.Err().Error()}
		}
		return Answer{Err: "query " + j.name + ": " + err.Error()}
	}
	var v4 []netip.Addr
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip.IP); ok && a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		}
	}
	return j.zone.Interpret(v4)
}

// queryName is the DNS name a zone is asked: the domain under the zone,
// or the reversed address (RFC 5782 §2.1, §2.4).
func queryName(h Host, zone string) string {
	if !h.IsIP() {
		return h.Name + "." + zone
	}
	a := h.IP.Unmap()
	b := a.AsSlice()
	var sb strings.Builder
	if a.Is4() {
		for i := len(b) - 1; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(b[i])))
			sb.WriteByte('.')
		}
	} else {
		const hex = "0123456789abcdef"
		for i := len(b) - 1; i >= 0; i-- {
			sb.WriteByte(hex[b[i]&0xf])
			sb.WriteByte('.')
			sb.WriteByte(hex[b[i]>>4])
			sb.WriteByte('.')
		}
	}
	sb.WriteString(zone)
	return sb.String()
}

var dblMeanings = map[byte]string{
	2: "spam domain", 4: "phish domain", 5: "malware domain", 6: "botnet C&C domain",
	102: "abused legit spam", 103: "abused spammed redirector domain", 104: "abused legit phish",
	105: "abused legit malware", 106: "abused legit botnet C&C",
}

var spamhausErrors = map[byte]string{
	252: "typing error in the DNSBL name",
	254: "query via a public or open resolver (refused)",
	255: "excessive number of queries (refused)",
}

var surblBits = []struct {
	bit  uint8
	name string
}{{8, "phishing"}, {16, "malware"}, {64, "abuse"}, {128, "cracked"}, {2, "bit 2"}, {4, "bit 4"}, {32, "bit 32"}}

var uriblBits = []struct {
	bit  uint8
	name string
}{{2, "black"}, {4, "grey"}, {8, "red"}, {16, "bit 16"}, {32, "bit 32"}, {64, "bit 64"}, {128, "bit 128"}}

var ipMeanings = map[byte]string{
	2: "SBL", 3: "SBL CSS", 4: "XBL", 5: "XBL", 6: "XBL", 7: "XBL", 9: "SBL DROP",
}

// Interpret reads a zone's A records (IPv4) for one name: a listing, an
// error code, an undocumented answer (an error), or nothing (no records:
// not listed). When records disagree a listing wins over an error.
func (z Zone) Interpret(ips []netip.Addr) Answer {
	var first Answer
	for _, a := range ips {
		an := z.interpret1(a)
		if an.Listed {
			return an
		}
		if first.Err == "" && an.Err != "" {
			first = an
		}
	}
	return first
}

func (z Zone) interpret1(a netip.Addr) Answer {
	code := a.String()
	b := a.As4()
	if b[0] == 127 && b[1] == 255 && b[2] == 255 {
		msg, ok := spamhausErrors[b[3]]
		if !ok {
			msg = "error code"
		}
		return Answer{Code: code, Err: z.Zone + " answered " + code + ": " + msg + ", not a listing"}
	}
	undocumented := Answer{Code: code, Err: z.Zone + " answered undocumented " + code + ", not a listing"}
	switch z.Kind {
	case KindDBL:
		if b[0] != 127 || b[1] != 0 || b[2] != 1 || b[3] < 2 {
			return undocumented
		}
		if b[3] == 255 {
			return Answer{Code: code, Err: z.Zone + " answered " + code + ": IP queries prohibited, not a listing"}
		}
		m, ok := dblMeanings[b[3]]
		if !ok {
			m = "listed (" + code + ")"
		}
		return Answer{Listed: true, Code: code, Meaning: m}
	case KindSURBL, KindURIBL:
		if b[0] != 127 || b[1] != 0 || b[2] != 0 || b[3] == 0 {
			return undocumented
		}
		if b[3] == 1 {
			return Answer{Code: code, Err: z.Zone + " answered " + code + ": query refused, not a listing"}
		}
		hit := b[3] & z.Mask
		if hit == 0 {
			return Answer{} // only lists the config does not count
		}
		bits := surblBits
		if z.Kind == KindURIBL {
			bits = uriblBits
		}
		var names []string
		for _, bn := range bits {
			if hit&bn.bit != 0 {
				names = append(names, bn.name)
			}
		}
		sort.Strings(names)
		return Answer{Listed: true, Code: code, Meaning: strings.Join(names, "+")}
	case KindIP:
		if b[0] != 127 || b[1] != 0 || b[2] != 0 || b[3] < 2 {
			return undocumented
		}
		if b[3] == 10 || b[3] == 11 {
			return Answer{} // PBL: an end-user range, not a listed web host
		}
		m, ok := ipMeanings[b[3]]
		if !ok {
			return undocumented
		}
		return Answer{Listed: true, Code: code, Meaning: m}
	}
	return undocumented
}
