package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

var zone = `
ttl60.example.     60   TXT "short"
ttl1d.example.   86400  TXT "long"
split.example.          TXT "v=spf1 " "ip4:192.0.2.1 " "-all"
mx.example.             MX  20 b.mx.example.
mx.example.             MX  10 a.mx.example.
dual.example.           A    192.0.2.1
dual.example.           AAAA 2001:db8::1
v4.example.             A    192.0.2.2
1.2.0.192.in-addr.arpa. PTR  host.example.
neg.example.net.        SOA  ns.example.net. admin.example.net. 1 3600 600 86400 42
neg.example.net.        A    192.0.2.9
lazy.example.           DELAY 200ms
lazy.example.           TXT "slow but sure"
slow.example.           TIMEOUT
broken.example.         SERVFAIL
big.example.            TXT "` + strings.Repeat("x", 250) + `" "` + strings.Repeat("y", 250) + `" "` + strings.Repeat("z", 250) + `"
`

var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

func newCache(t *testing.T, cfg config.DNSConfig, servers ...string) (*resolver.Cache, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	cfg.Servers = servers
	c, err := resolver.New(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

func txt(t *testing.T, c *resolver.Cache, name string) ([]string, error) {
	t.Helper()
	return c.LookupTXT(context.Background(), name)
}

func TestTTLAndExpiry(t *testing.T) {
	srv := fakedns.Start(t, zone)
	tests := []struct {
		name    string
		qname   string
		maxTTL  time.Duration
		stillAt time.Duration // cached this long after the first answer
		goneAt  time.Duration // and asked again this long after
	}{
		{"record ttl honoured", "ttl60.example", time.Hour, 59 * time.Second, 61 * time.Second},
		{"ttl capped by max_ttl", "ttl1d.example", 10 * time.Minute, 9 * time.Minute, 11 * time.Minute},
		{"nxdomain cached for the soa minimum", "nope.neg.example.net", time.Hour, 41 * time.Second, 43 * time.Second},
		{"nodata cached for the soa minimum", "neg.example.net", time.Hour, 41 * time.Second, 43 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newCache(t, config.DNSConfig{MaxTTL: tt.maxTTL, NegativeTTL: time.Hour}, srv.Addr())
			before := srv.Queries(tt.qname)
			_, err1 := txt(t, c, tt.qname)
			clk.Advance(tt.stillAt)
			_, err2 := txt(t, c, tt.qname)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("cached answer differs: %v vs %v", err1, err2)
			}
			if got := srv.Queries(tt.qname) - before; got != 1 {
				t.Fatalf("%d upstream queries within the TTL, want 1", got)
			}
			clk.Advance(tt.goneAt - tt.stillAt)
			_, _ = txt(t, c, tt.qname)
			if got := srv.Queries(tt.qname) - before; got != 2 {
				t.Fatalf("%d upstream queries after expiry, want 2", got)
			}
			st := c.Stats()
			if st.Hits != 1 || st.Misses != 2 || st.HitRate() != 1.0/3 {
				t.Fatalf("stats %+v hit rate %v", st, st.HitRate())
			}
		})
	}
}

func TestNegativeTTLCap(t *testing.T) {
	srv := fakedns.Start(t, zone)
	// The synthetic SOA says 300s; negative_ttl caps it at 30s.
	c, clk := newCache(t, config.DNSConfig{NegativeTTL: 30 * time.Second}, srv.Addr())
	_, err := txt(t, c, "missing.example")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound || de.Temporary() {
		t.Fatalf("err = %#v, want a permanent not-found *net.DNSError", err)
	}
	clk.Advance(29 * time.Second)
	_, _ = txt(t, c, "missing.example")
	clk.Advance(2 * time.Second)
	_, _ = txt(t, c, "missing.example")
	if n := srv.Queries("missing.example"); n != 2 {
		t.Fatalf("%d queries, want 2 (one cached hit, one after the cap)", n)
	}
}

func TestConcurrentQuestionsShareOneQuery(t *testing.T) {
	srv := fakedns.Start(t, zone)
	c, _ := newCache(t, config.DNSConfig{Timeout: 2 * time.Second}, srv.Addr())
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.LookupTXT(context.Background(), "LAZY.example.")
			if err == nil && (len(r) != 1 || r[0] != "slow but sure") {
				err = errors.New("wrong answer " + strings.Join(r, ","))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if q := srv.Queries("lazy.example"); q != 1 {
		t.Fatalf("%d upstream queries for %d concurrent questions, want 1", q, n)
	}
	if st := c.Stats(); st.Misses != 1 || st.Dedups+st.Hits != n-1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFailures(t *testing.T) {
	srv := fakedns.Start(t, zone)
	dead := deadServer(t)
	tests := []struct {
		name      string
		servers   []string
		qname     string
		ctxLimit  time.Duration
		wantErr   bool
		timeout   bool
		maxWait   time.Duration
		wantCache bool
	}{
		{"timeout bounded by dns.timeout", []string{srv.Addr()}, "slow.example", 0, true, true, 600 * time.Millisecond, false},
		{"timeout bounded by the caller", []string{srv.Addr()}, "slow.example", 50 * time.Millisecond, true, true, 200 * time.Millisecond, false},
		{"servfail is temporary", []string{srv.Addr()}, "broken.example", 0, true, false, 300 * time.Millisecond, false},
		{"dead first server, second answers", []string{dead, srv.Addr()}, "ttl60.example", 0, false, false, 300 * time.Millisecond, true},
		{"servfail first server, second answers", []string{srv.Addr(), srv.Addr()}, "broken.example", 0, true, false, 300 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCache(t, config.DNSConfig{Timeout: 300 * time.Millisecond}, tt.servers...)
			ctx := context.Background()
			if tt.ctxLimit > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxLimit)
				defer cancel()
			}
			start := time.Now()
			_, err := c.LookupTXT(ctx, tt.qname)
			if took := time.Since(start); took > tt.maxWait {
				t.Fatalf("lookup took %s, want at most %s", took, tt.maxWait)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				var de *net.DNSError
				if !errors.As(err, &de) || !de.Temporary() || de.IsNotFound || de.Timeout() != tt.timeout {
					t.Fatalf("err = %#v, want a temporary *net.DNSError (timeout %v)", err, tt.timeout)
				}
			}
			if tt.timeout {
				// Let the abandoned query end; a question asked while it is
				// still in flight would share it.
				time.Sleep(350 * time.Millisecond)
			}
			before := srv.Queries(tt.qname)
			_, _ = c.LookupTXT(context.Background(), tt.qname)
			if cached := srv.Queries(tt.qname) == before; cached != tt.wantCache {
				t.Fatalf("second lookup cached = %v, want %v", cached, tt.wantCache)
			}
		})
	}
}

// TestFollowerOutlivesLeaderDeadline is the real path of a question asked
// by a caller with little time left (the leader) and, while its query is
// upstream, by one with time enough: the leader gives up at its deadline,
// the other still gets the answer.
func TestFollowerOutlivesLeaderDeadline(t *testing.T) {
	srv := fakedns.Start(t, `
cut.example. 0 TXT "worth the wait"
cut.example.   DELAY 400ms
`)
	c, _ := newCache(t, config.DNSConfig{Timeout: 5 * time.Second}, srv.Addr())
	lctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	leader := make(chan error, 1)
	go func() {
		_, err := c.LookupTXT(lctx, "cut.example")
		leader <- err
	}()
	for srv.Queries("cut.example") == 0 {
		time.Sleep(time.Millisecond)
	}
	got, err := c.LookupTXT(context.Background(), "cut.example")
	if err != nil || len(got) != 1 || got[0] != "worth the wait" {
		t.Fatalf("follower: %q %v", got, err)
	}
	var de *net.DNSError
	if err := <-leader; !errors.As(err, &de) || !de.Timeout() || !de.Temporary() {
		t.Fatalf("leader: %v, want a temporary timeout", err)
	}
	if q := srv.Queries("cut.example"); q != 2 {
		t.Fatalf("%d queries, want 2 (the leader's, cut short, and the follower's)", q)
	}
}

// deadServer returns an address where no DNS server listens.
func deadServer(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestLookups(t *testing.T) {
	srv := fakedns.Start(t, zone)
	c, _ := newCache(t, config.DNSConfig{}, srv.Addr())
	ctx := context.Background()

	got, err := c.LookupTXT(ctx, "split.example")
	if err != nil || len(got) != 1 || got[0] != "v=spf1 ip4:192.0.2.1 -all" {
		t.Fatalf("split TXT: %q %v", got, err)
	}
	big, err := c.LookupTXT(ctx, "big.example")
	if err != nil || len(big) != 1 || len(big[0]) != 750 {
		t.Fatalf("truncated UDP answer not retried over TCP: %d %v", len(big), err)
	}
	mx, err := c.LookupMX(ctx, "mx.example")
	if err != nil || len(mx) != 2 || mx[0].Host != "a.mx.example." || mx[1].Pref != 20 {
		t.Fatalf("MX: %v %v", mx, err)
	}
	ips, err := c.LookupIPAddr(ctx, "dual.example")
	if err != nil || len(ips) != 2 || ips[0].IP.String() != "192.0.2.1" || ips[1].IP.String() != "2001:db8::1" {
		t.Fatalf("dual: %v %v", ips, err)
	}
	ips, err = c.LookupIPAddr(ctx, "v4.example")
	if err != nil || len(ips) != 1 {
		t.Fatalf("v4 only (AAAA NODATA): %v %v", ips, err)
	}
	ips, err = c.LookupIPAddr(ctx, "192.0.2.77")
	if err != nil || len(ips) != 1 || ips[0].IP.String() != "192.0.2.77" {
		t.Fatalf("literal: %v %v", ips, err)
	}
	_, err = c.LookupIPAddr(ctx, "none.example")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("none: %v", err)
	}
	names, err := c.LookupAddr(ctx, "192.0.2.1")
	if err != nil || len(names) != 1 || names[0] != "host.example." {
		t.Fatalf("PTR: %v %v", names, err)
	}
	if _, err := c.LookupTXT(ctx, "bad..name"); err == nil {
		t.Fatal("bad name looked up")
	}
}

func TestCacheSizeEvictsLeastRecentlyUsed(t *testing.T) {
	srv := fakedns.Start(t, zone)
	c, _ := newCache(t, config.DNSConfig{CacheSize: 2}, srv.Addr())
	for _, n := range []string{"ttl60.example", "ttl1d.example", "ttl60.example", "split.example", "ttl60.example", "ttl1d.example"} {
		_, _ = txt(t, c, n)
	}
	// ttl1d was least recently used when split came in, so it was asked twice.
	if a, b := srv.Queries("ttl60.example"), srv.Queries("ttl1d.example"); a != 1 || b != 2 {
		t.Fatalf("queries ttl60=%d ttl1d=%d, want 1 and 2", a, b)
	}
	if st := c.Stats(); st.Entries != 2 {
		t.Fatalf("entries %d", st.Entries)
	}
}

func TestReady(t *testing.T) {
	srv := fakedns.Start(t, zone)
	c, _ := newCache(t, config.DNSConfig{Timeout: 200 * time.Millisecond}, srv.Addr())
	if err := c.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	d, _ := newCache(t, config.DNSConfig{Timeout: 200 * time.Millisecond}, deadServer(t))
	if err := d.Ready(context.Background()); err == nil {
		t.Fatal("Ready with no server listening")
	}
}

func TestNewDefaultsToResolvConf(t *testing.T) {
	c, err := resolver.New(config.DNSConfig{}, nil)
	if err != nil {
		t.Skipf("no usable %s: %v", resolver.ResolvConf, err)
	}
	if len(c.Servers()) == 0 {
		t.Fatal("no servers")
	}
	if _, err := resolver.New(config.DNSConfig{Servers: []string{"not an address"}}, nil); err == nil {
		t.Fatal("bad server accepted")
	}
}

// BenchmarkLookupMiss is a question that is never cached (TTL 0, RFC 1035
// §3.2.1), as with a resolver that serves TTL-0 records: every lookup is a
// query upstream.
func BenchmarkLookupMiss(b *testing.B) {
	srv := fakedns.Start(b, `zero.example. 0 TXT "v=spf1 -all"`)
	c, err := resolver.New(config.DNSConfig{Servers: []string{srv.Addr()}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	g := goroutinesCreated()
	for i := 0; i < b.N; i++ {
		if _, err := c.LookupTXT(ctx, "zero.example"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(goroutinesCreated()-g)/float64(b.N), "goroutines/op")
	if st := c.Stats(); st.Hits != 0 {
		b.Fatalf("TTL-0 answer cached: %+v", st)
	}
}

// goroutinesCreated is the number of goroutines the process has started
// (the in-process fakedns server starts one per UDP query it serves).
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// BenchmarkLookupMissParallel is BenchmarkLookupMiss from several
// goroutines at once, each asking its own never-cached name (so that none
// shares another's query): the shape of a gateway under load, where the
// cost of handing a query to another goroutine and back shows.
func BenchmarkLookupMissParallel(b *testing.B) {
	var zone strings.Builder
	const names = 64
	for i := 0; i < names; i++ {
		fmt.Fprintf(&zone, "zero%d.example. 0 TXT \"v=spf1 -all\"\n", i)
	}
	srv := fakedns.Start(b, zone.String())
	c, err := resolver.New(config.DNSConfig{Servers: []string{srv.Addr()}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int32
	b.ReportAllocs()
	g := goroutinesCreated()
	b.RunParallel(func(pb *testing.PB) {
		name := fmt.Sprintf("zero%d.example", next.Add(1)%names)
		ctx := context.Background()
		for pb.Next() {
			if _, err := c.LookupTXT(ctx, name); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(goroutinesCreated()-g)/float64(b.N), "goroutines/op")
}

// sockets zone: TTL-0 answers are never cached (RFC 1035 §3.2.1), so each
// lookup is a query the server sees.
const socketZone = `
zero.example.  0 TXT "v=spf1 -all"
zero1.example. 0 TXT "1"
zero2.example. 0 TXT "2"
zero3.example. 0 TXT "3"
zero4.example. 0 TXT "4"
late.example.  0 TXT "late"
late.example.    DELAY 300ms
spoof.example.   MISMATCH
`

func distinct(s []string) int {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return len(m)
}

func TestSocketsReusedOnlyOnLoopback(t *testing.T) {
	t.Run("loopback server: one socket for sequential queries", func(t *testing.T) {
		srv := fakedns.Start(t, socketZone)
		c, _ := newCache(t, config.DNSConfig{}, srv.Addr())
		for i := 0; i < 20; i++ {
			if got, err := txt(t, c, "zero.example"); err != nil || len(got) != 1 || got[0] != "v=spf1 -all" {
				t.Fatalf("lookup %d: %q %v", i, got, err)
			}
		}
		src := srv.Sources("zero.example")
		if len(src) != 20 || distinct(src) != 1 {
			t.Fatalf("%d queries from %d source ports, want 20 from 1: %v", len(src), distinct(src), src)
		}
		if st := c.Stats(); st.Hits != 0 || st.Misses != 20 {
			t.Fatalf("TTL-0 answers cached: %+v", st)
		}
		if n := resolver.IdleSockets(c, srv.Addr()); n != 1 {
			t.Fatalf("%d idle sockets, want 1", n)
		}
	})
	t.Run("loopback server: no more sockets than queries in flight", func(t *testing.T) {
		srv := fakedns.Start(t, socketZone)
		c, _ := newCache(t, config.DNSConfig{Timeout: 2 * time.Second}, srv.Addr())
		names := []string{"zero1.example", "zero2.example", "zero3.example", "zero4.example"}
		var wg sync.WaitGroup
		errs := make(chan error, 4*25)
		for _, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					if _, err := c.LookupTXT(context.Background(), n); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var all []string
		for _, n := range names {
			all = append(all, srv.Sources(n)...)
		}
		if len(all) != 100 || distinct(all) > len(names) {
			t.Fatalf("%d queries from %d source ports, want 100 from at most %d", len(all), distinct(all), len(names))
		}
	})
	t.Run("remote server: a fresh socket per query", func(t *testing.T) {
		srv := fakedns.Start(t, socketZone)
		c, _ := newCache(t, config.DNSConfig{}, srv.Addr())
		resolver.FreshSockets(c)
		for i := 0; i < 10; i++ {
			if _, err := txt(t, c, "zero.example"); err != nil {
				t.Fatal(err)
			}
		}
		if src := srv.Sources("zero.example"); len(src) != 10 || distinct(src) != 10 {
			t.Fatalf("%d queries from %d source ports, want 10 from 10: %v", len(src), distinct(src), src)
		}
	})
}

func TestFailedSocketNotReused(t *testing.T) {
	tests := []struct {
		name    string
		bad     string
		timeout bool
	}{
		// The reply comes after the query gave up: were the socket pooled,
		// it would be waiting in it for the next query.
		{"timeout", "late.example", true},
		// A reply with the query's ID and another question (RFC 5452 §9.1).
		{"reply to another question", "spoof.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakedns.Start(t, socketZone)
			c, _ := newCache(t, config.DNSConfig{Timeout: 100 * time.Millisecond}, srv.Addr())
			if _, err := txt(t, c, "zero.example"); err != nil {
				t.Fatal(err)
			}
			_, err := txt(t, c, tt.bad)
			var de *net.DNSError
			if !errors.As(err, &de) || !de.Temporary() || de.IsNotFound || de.Timeout() != tt.timeout {
				t.Fatalf("err = %#v, want a temporary error (timeout %v)", err, tt.timeout)
			}
			// Wait for the abandoned query to end and the late reply (if
			// any) to be sent, then ask again.
			time.Sleep(400 * time.Millisecond)
			if n := resolver.IdleSockets(c, srv.Addr()); n != 0 {
				t.Fatalf("%d idle sockets after the failure, want 0", n)
			}
			got, err := txt(t, c, "zero.example")
			if err != nil || len(got) != 1 || got[0] != "v=spf1 -all" {
				t.Fatalf("next lookup: %q %v", got, err)
			}
			first, bad, next := srv.Sources("zero.example")[0], srv.Sources(tt.bad)[0], srv.Sources("zero.example")[1]
			if bad != first {
				t.Fatalf("failed query from %s, want the pooled socket %s", bad, first)
			}
			if next == bad {
				t.Fatalf("query after the failure reused its socket %s", bad)
			}
			if n := resolver.IdleSockets(c, srv.Addr()); n != 1 {
				t.Fatalf("%d idle sockets, want 1", n)
			}
		})
	}
}
