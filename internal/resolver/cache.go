package resolver

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
)

// ResolvConf is where the system's upstream resolvers are read from when
// dns.servers is empty.
const ResolvConf = "/etc/resolv.conf"

// Cache is a caching stub resolver: it asks the configured upstream
// recursive resolvers with miekg/dns (so that TTLs are visible), keeps
// answers for their TTL (capped), keeps negative answers for the SOA
// minimum (RFC 2308 §5, capped), and sends one query upstream for any
// number of concurrent identical questions. It is safe for concurrent use.
type Cache struct {
	servers []string
	timeout time.Duration
	maxTTL  time.Duration
	negTTL  time.Duration
	size    int
	clk     clock.Clock
	udp     *dns.Client
	tcp     *dns.Client
	// pools holds reusable UDP sockets for the servers on loopback only
	// (see udpPool); a server without one gets a socket per query.
	pools map[string]*udpPool
	// query asks upstream: c.exchange, or a fake transport in tests.
	query func(context.Context, question) (*dns.Msg, error)

	mu       sync.Mutex
	entries  map[question]*list.Element
	lru      *list.List // front: most recently used *entry
	inflight map[question]*flight

	hits, misses, errs, dedups atomic.Uint64
}

// Stats are the cache's counters since it was made.
type Stats struct {
	// Hits are questions answered from the cache.
	Hits uint64
	// Misses are questions sent upstream.
	Misses uint64
	// Errors are upstream queries that failed (timeout, SERVFAIL...); a
	// query ended by its own caller giving up is not one.
	Errors uint64
	// Dedups are questions answered by (or given up while waiting for)
	// an identical query already in flight instead of sending their own;
	// a question whose query's caller gave up and that asked again
	// counts as a miss.
	Dedups uint64
	// Entries is the number of questions cached now.
	Entries int
}

// HitRate is the share of questions answered without a query of their
// own: (hits + dedups) / all questions; 0 before the first question.
func (s Stats) HitRate() float64 {
	n := s.Hits + s.Misses + s.Dedups
	if n == 0 {
		return 0
	}
	return float64(s.Hits+s.Dedups) / float64(n)
}

type question struct {
	name  string // lower-case FQDN
	qtype uint16
}

// answer is what upstream said about a question.
type answer struct {
	rrs []dns.RR // records of the asked type (CNAME chain followed)
	// notFound is set for NXDOMAIN and NODATA (RFC 2308 §2.1, §2.2).
	notFound bool
}

type entry struct {
	q       question
	a       answer
	expires time.Time
}

// flight is a query upstream in progress, run by the caller that asked
// first (its leader) and waited for by the others (its followers).
type flight struct {
	done chan struct{}
	a    answer
	err  error
	// cut is set when the query failed because its leader's own context
	// ended (cancelled, or a deadline earlier than dns.timeout): the
	// answer is unknown rather than bad, and followers with time left ask
	// again instead of taking the leader's failure as theirs.
	cut bool
}

// New makes a Cache from the dns section of the config. An empty
// cfg.Servers means the nameservers of /etc/resolv.conf.
func New(cfg config.DNSConfig, clk clock.Clock) (*Cache, error) {
	if clk == nil {
		clk = clock.System{}
	}
	var servers []string
	for _, s := range cfg.Servers {
		a, err := config.ServerAddr(s)
		if err != nil {
			return nil, err
		}
		servers = append(servers, a)
	}
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("no dns.servers and %s unreadable: %v", ResolvConf, err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("no dns.servers and no nameserver in %s", ResolvConf)
		}
	}
	c := &Cache{
		servers:  servers,
		timeout:  orDefault(cfg.Timeout, config.DefaultDNSTimeout),
		maxTTL:   orDefault(cfg.MaxTTL, config.DefaultDNSMaxTTL),
		negTTL:   orDefault(cfg.NegativeTTL, config.DefaultDNSNegativeTTL),
		size:     cfg.CacheSize,
		clk:      clk,
		udp:      &dns.Client{Net: "udp", UDPSize: 1232},
		tcp:      &dns.Client{Net: "tcp"},
		entries:  map[question]*list.Element{},
		lru:      list.New(),
		inflight: map[question]*flight{},
	}
	c.query = c.exchange
	if c.size <= 0 {
		c.size = config.DefaultDNSCacheSize
	}
	for _, s := range servers {
		if reusable(s) && c.pools[s] == nil {
			if c.pools == nil {
				c.pools = map[string]*udpPool{}
			}
			c.pools[s] = &udpPool{addr: s, timeout: c.timeout}
		}
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Servers returns the upstream servers, HOST:PORT, in the order tried.
func (c *Cache) Servers() []string { return append([]string(nil), c.servers...) }

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	n := c.lru.Len()
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Errors: c.errs.Load(), Dedups: c.dedups.Load(), Entries: n}
}

// Ready reports whether an upstream server answers: it asks for the root
// zone's NS records, bypassing the cache. Any NOERROR or NXDOMAIN answer
// will do; timeouts, SERVFAIL and REFUSED from every server are an error.
func (c *Cache) Ready(ctx context.Context) error {
	ctx, cancel := clock.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.query(ctx, question{name: ".", qtype: dns.TypeNS})
	return err
}

// lookup answers a question from the cache or upstream. It returns the
// records of the asked type, or a *net.DNSError: IsNotFound for NXDOMAIN
// and NODATA, IsTimeout or IsTemporary for failures. The wait is bounded by
// ctx and by the configured timeout, whichever ends first.
//
// A miss is asked upstream by the caller itself, on its own goroutine
// (lead): no goroutine is started and no other goroutine is woken to hand
// the answer over. Callers asking the same question meanwhile wait for
// that query (they follow it). A follower needs no timer of its own: the
// query it waits for ends by its leader's bound, which is at most
// dns.timeout after the follower arrived. When that query ends because the
// leader's own context ended (cut), a follower whose context and
// dns.timeout still run asks again, leading a new query (or following one
// another follower started first) within what is left of its own bound:
// no caller fails because another one gave up sooner.
func (c *Cache) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	q := question{name: dns.CanonicalName(name), qtype: qtype}
	if _, ok := dns.IsDomainName(q.name); !ok || strings.Contains(q.name, "..") {
		return nil, &net.DNSError{Err: "invalid domain name", Name: name}
	}
	var limit time.Time // this caller's dns.timeout, from its first miss
	for {
		now := c.clk.Now()
		c.mu.Lock()
		if el, ok := c.entries[q]; ok {
			e := el.Value.(*entry)
			if now.Before(e.expires) {
				c.lru.MoveToFront(el)
				c.mu.Unlock()
				c.hits.Add(1)
				return e.a.result(name)
			}
			c.lru.Remove(el)
			delete(c.entries, q)
		}
		f, shared := c.inflight[q]
		if !shared {
			f = &flight{done: make(chan struct{})}
			c.inflight[q] = f
		}
		c.mu.Unlock()
		if limit.IsZero() {
			// Wall-clock time, as context deadlines are, whatever clock
			// the cache's TTLs run on.
			limit = time.Now().Add(c.timeout)
		}

		if !shared {
			c.misses.Add(1)
			return c.lead(ctx, name, q, f, limit)
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			c.dedups.Add(1)
			return nil, abandoned(ctx, name)
		}
		if f.cut && ctx.Err() == nil && time.Now().Before(limit) {
			continue
		}
		c.dedups.Add(1)
		if f.err != nil {
			return nil, f.err
		}
		return f.a.result(name)
	}
}

// abandoned is the error of a lookup whose caller's context ended (or
// whose deadline has passed, the context's timer not having fired yet).
func abandoned(ctx context.Context, name string) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return &net.DNSError{Err: "lookup abandoned: " + err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
}

func (a answer) result(name string) ([]dns.RR, error) {
	if a.notFound {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return a.rrs, nil
}

// lead asks q upstream on the caller's goroutine, bounded by the earlier
// of ctx's deadline and limit, caches the answer, and hands it to the
// followers of f.
func (c *Cache) lead(ctx context.Context, name string, q question, f *flight, limit time.Time) ([]dns.RR, error) {
	var ttl time.Duration
	returned := false
	// The flight ends however the query does: a panic in it must not
	// leave its followers waiting (they have no timer of their own); they
	// ask again, or fail, as after a leader that gave up.
	defer func() {
		if !returned {
			f.err, f.cut = &net.DNSError{Err: "query ended by a panic", Name: name, IsTemporary: true}, true
		}
		c.mu.Lock()
		delete(c.inflight, q)
		if f.err == nil && ttl > 0 {
			c.store(q, f.a, c.clk.Now().Add(ttl))
		}
		c.mu.Unlock()
		close(f.done)
	}()
	qctx, cancel := clock.WithDeadline(ctx, limit)
	msg, err := c.query(qctx, q)
	cancel()
	returned = true
	f.err = err
	if err == nil {
		f.a, ttl = c.interpret(q, msg)
		return f.a.result(name)
	}
	// The caller's own bound ended the query when its context ended, or
	// when its deadline, earlier than limit, has passed (the socket's
	// deadline may fire before the context's timer does).
	dl, ok := ctx.Deadline()
	f.cut = ctx.Err() != nil || ok && dl.Before(limit) && !time.Now().Before(dl)
	if f.cut {
		return nil, abandoned(ctx, name)
	}
	// Upstream failed (a timeout within dns.timeout, SERVFAIL...); a
	// caller giving up is not counted against it.
	c.errs.Add(1)
	return nil, err
}

// store caches an answer; c.mu is held.
func (c *Cache) store(q question, a answer, expires time.Time) {
	if el, ok := c.entries[q]; ok {
		c.lru.Remove(el)
	}
	c.entries[q] = c.lru.PushFront(&entry{q: q, a: a, expires: expires})
	for c.lru.Len() > c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*entry).q)
	}
}

// interpret turns a NOERROR or NXDOMAIN reply into an answer and the time
// it may be cached.
func (c *Cache) interpret(q question, m *dns.Msg) (answer, time.Duration) {
	var a answer
	minTTL := uint32(0)
	first := true
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Rrtype != q.qtype && h.Rrtype != dns.TypeCNAME {
			continue
		}
		// The TTL of an answer reached through a CNAME chain is the
		// smallest TTL along the chain (RFC 2181 §5.2 for RRsets).
		if first || h.Ttl < minTTL {
			minTTL, first = h.Ttl, false
		}
		if h.Rrtype == q.qtype {
			a.rrs = append(a.rrs, rr)
		}
	}
	if len(a.rrs) > 0 {
		return a, capTTL(time.Duration(minTTL)*time.Second, c.maxTTL)
	}
	// NXDOMAIN (RFC 2308 §2.1) or NODATA (§2.2): negative. Its TTL is the
	// minimum of the SOA record's TTL and its MINIMUM field (§5); without
	// a SOA in the authority section it is not cached (§5).
	a.notFound = true
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl := soa.Hdr.Ttl
			if soa.Minttl < ttl {
				ttl = soa.Minttl
			}
			return a, capTTL(time.Duration(ttl)*time.Second, c.negTTL)
		}
	}
	return a, 0
}

func capTTL(d, max time.Duration) time.Duration {
	if d > max {
		return max
	}
	return d
}

// errTruncated marks a UDP reply that must be retried over TCP.
var errTruncated = errors.New("truncated")

// exchange asks the upstream servers in turn until one gives a usable
// answer (NOERROR or NXDOMAIN). UDP first, TCP when the reply is truncated
// (RFC 7766 §5). Over UDP a server on loopback is asked on a reused
// socket, any other on a fresh one with a random source port (udpPool,
// RFC 5452 §9.2). A reply is taken only when its ID and question match the
// query (RFC 5452 §9.1).
func (c *Cache) exchange(ctx context.Context, q question) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(q.name, q.qtype)
	req.RecursionDesired = true
	req.SetEdns0(1232, false)
	var last error
	for _, srv := range c.servers {
		if ctx.Err() != nil {
			break
		}
		m, err := c.exchangeUDP(ctx, req, srv)
		if err == nil && m.Truncated {
			m, _, err = c.tcp.ExchangeContext(ctx, req, srv)
			if err == nil && m.Truncated {
				err = errTruncated
			}
		}
		if err != nil {
			last = err
			continue
		}
		if !answers(req, m) {
			last = fmt.Errorf("reply to another question from %s", srv)
			continue
		}
		switch m.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return m, nil
		default:
			// SERVFAIL, REFUSED...: another server may do better.
			last = fmt.Errorf("%s from %s", dns.RcodeToString[m.Rcode], srv)
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	timeout := ctx.Err() != nil
	var ne net.Error
	if errors.As(last, &ne) && ne.Timeout() {
		timeout = true
	}
	return nil, &net.DNSError{Err: last.Error(), Name: strings.TrimSuffix(q.name, "."), IsTimeout: timeout, IsTemporary: true}
}

// exchangeUDP sends req to srv over UDP: on a pooled socket for a server
// on loopback, else on a socket of its own.
func (c *Cache) exchangeUDP(ctx context.Context, req *dns.Msg, srv string) (*dns.Msg, error) {
	if p := c.pools[srv]; p != nil {
		return p.exchange(ctx, req)
	}
	m, _, err := c.udp.ExchangeContext(ctx, req, srv)
	return m, err
}

// LookupTXT returns the TXT records of name, the strings of each record
// joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (c *Cache) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := c.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupMX returns the MX records of name, by preference.
func (c *Cache) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := c.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pref < out[j].Pref })
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host, asking for A
// and AAAA at the same time. An address literal is returned as is. When one
// of the two lookups fails and the other has addresses, those are returned.
func (c *Cache) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []net.IPAddr{{IP: net.IP(a.AsSlice()), Zone: a.Zone()}}, nil
	}
	type res struct {
		rrs []dns.RR
		err error
	}
	ch := make(chan res, 1)
	go func() {
		rrs, err := c.lookup(ctx, host, dns.TypeAAAA)
		ch <- res{rrs, err}
	}()
	v4, err4 := c.lookup(ctx, host, dns.TypeA)
	r6 := <-ch
	var out []net.IPAddr
	for _, rr := range v4 {
		out = append(out, net.IPAddr{IP: rr.(*dns.A).A})
	}
	for _, rr := range r6.rrs {
		out = append(out, net.IPAddr{IP: rr.(*dns.AAAA).AAAA})
	}
	if len(out) > 0 {
		return out, nil
	}
	// Both empty: a temporary failure of either wins over "not found",
	// since the other family might have had addresses.
	for _, err := range []error{err4, r6.err} {
		var de *net.DNSError
		if errors.As(err, &de) && !de.IsNotFound {
			return nil, err
		}
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// LookupAddr returns the PTR names of an address.
func (c *Cache) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := c.lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}

var _ Resolver = (*Cache)(nil)
