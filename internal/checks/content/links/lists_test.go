package links_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/content/links"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// world is the DNS the lookups tests run against: three domain lists and
// an IP list, with listings, the lists' error codes and failures.
const world = `
listed.example.dbl.test.         A 127.0.1.4
spam.example.dbl.test.           A 127.0.1.2
abused.example.dbl.test.         A 127.0.1.104
refused.example.dbl.test.        A 127.255.255.254
typo.example.dbl.test.           A 127.255.255.252
ratelimited.example.dbl.test.    A 127.255.255.255
ipquery.example.dbl.test.        A 127.0.1.255
rewritten.example.dbl.test.      A 192.0.2.99
broken.example.dbl.test.         SERVFAIL
slow.example.dbl.test.           TIMEOUT
ph.example.surbl.test.           A 127.0.0.8
mw-cr.example.surbl.test.        A 127.0.0.144
unused-bit.example.surbl.test.   A 127.0.0.2
refused.example.surbl.test.      A 127.0.0.1
black.example.uribl.test.        A 127.0.0.2
grey.example.uribl.test.         A 127.0.0.4
refused.example.uribl.test.      A 127.0.0.1
1.2.0.192.zen.test.              A 127.0.0.2
2.2.0.192.zen.test.              A 127.0.0.10
3.2.0.192.zen.test.              A 127.255.255.254
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test. A 127.0.0.4
`

var zones = []links.Zone{
	{Zone: "dbl.test", Kind: links.KindDBL},
	{Zone: "surbl.test", Kind: links.KindSURBL},
	{Zone: "uribl.test", Kind: links.KindURIBL},
	{Zone: "zen.test", Kind: links.KindIP},
}

// newResolver is the project's caching resolver on a fake DNS server.
func newResolver(t testing.TB, srv *fakedns.Server) *resolver.Cache {
	t.Helper()
	r, err := resolver.New(config.DNSConfig{Servers: []string{srv.Addr()}, Timeout: 2 * time.Second, CacheSize: 10000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newLists(t testing.TB, cfg links.Config, r links.Resolver) *links.Lists {
	t.Helper()
	l, err := links.NewLists(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func names(ns ...string) []links.Host {
	var out []links.Host
	for _, n := range ns {
		if a, err := netip.ParseAddr(n); err == nil {
			out = append(out, links.Host{Name: a.String(), IP: a})
			continue
		}
		out = append(out, links.Host{Name: n})
	}
	return out
}

func listingStrings(r links.Result) []string {
	var out []string
	for _, l := range r.Listings {
		out = append(out, fmt.Sprintf("%s@%s=%s(%s)", l.Domain, l.Zone, l.Code, l.Meaning))
	}
	return out
}

func TestCheck(t *testing.T) {
	srv := fakedns.Start(t, world)
	l := newLists(t, links.Config{Zones: zones, Timeout: 2 * time.Second}, newResolver(t, srv))
	tests := []struct {
		name     string
		hosts    []links.Host
		listings []string
		errors   int
	}{
		{"DBL phish listing with its meaning", names("listed.example"), []string{"listed.example@dbl.test=127.0.1.4(phish domain)"}, 0},
		{"DBL abused legit listing", names("abused.example"), []string{"abused.example@dbl.test=127.0.1.104(abused legit phish)"}, 0},
		{"clean host: NXDOMAIN everywhere", names("clean.example"), nil, 0},
		{"DBL public resolver code is an error, not a listing", names("refused.example"), nil, 3},
		{"DBL typo and rate-limit codes are errors", names("typo.example", "ratelimited.example"), nil, 2},
		{"DBL IP-queries-prohibited code is an error", names("ipquery.example"), nil, 1},
		{"an undocumented answer (NXDOMAIN rewritten) is an error", names("rewritten.example"), nil, 1},
		{"SERVFAIL is an error", names("broken.example"), nil, 1},
		{"SURBL phishing bit", names("ph.example"), []string{"ph.example@surbl.test=127.0.0.8(phishing)"}, 0},
		{"SURBL two bits", names("mw-cr.example"), []string{"mw-cr.example@surbl.test=127.0.0.144(cracked+malware)"}, 0},
		{"SURBL bit outside the mask is not a listing", names("unused-bit.example"), nil, 0},
		{"URIBL black", names("black.example"), []string{"black.example@uribl.test=127.0.0.2(black)"}, 0},
		{"URIBL grey is outside the default mask", names("grey.example"), nil, 0},
		{"IPv4 literal against the IP zone", names("192.0.2.1"), []string{"192.0.2.1@zen.test=127.0.0.2(SBL)"}, 0},
		{"IPv6 literal by nibbles", names("2001:db8::1"), []string{"2001:db8::1@zen.test=127.0.0.4(XBL)"}, 0},
		{"PBL is not a listing of a web host", names("192.0.2.2"), nil, 0},
		{"IP zone error code is an error", names("192.0.2.3"), nil, 1},
		{"first listed in message order comes first", names("clean.example", "black.example", "listed.example"),
			[]string{"black.example@uribl.test=127.0.0.2(black)", "listed.example@dbl.test=127.0.1.4(phish domain)"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := l.Check(context.Background(), tc.hosts)
			if fmt.Sprint(listingStrings(res)) != fmt.Sprint(tc.listings) && !(len(res.Listings) == 0 && len(tc.listings) == 0) {
				t.Errorf("listings %q, want %q", listingStrings(res), tc.listings)
			}
			if len(res.Errors) != tc.errors {
				t.Errorf("errors %+v, want %d", res.Errors, tc.errors)
			}
			if res.Listed() != (len(tc.listings) > 0) {
				t.Errorf("Listed() = %v", res.Listed())
			}
			if res.Answered+len(res.Errors) != res.Lookups {
				t.Errorf("%d lookups, %d answered, %d errors", res.Lookups, res.Answered, len(res.Errors))
			}
		})
	}
}

func TestCheckURIBLRefusedIsError(t *testing.T) {
	srv := fakedns.Start(t, world)
	l := newLists(t, links.Config{Zones: []links.Zone{{Zone: "uribl.test", Kind: links.KindURIBL, Mask: 2 | 4 | 8}, {Zone: "surbl.test", Kind: links.KindSURBL}}}, newResolver(t, srv))
	res := l.Check(context.Background(), names("refused.example", "grey.example"))
	if got := listingStrings(res); fmt.Sprint(got) != "[grey.example@uribl.test=127.0.0.4(grey)]" {
		t.Fatalf("listings %q", got)
	}
	if len(res.Errors) != 2 || res.Errors[0].Code != "127.0.0.1" || !strings.Contains(res.Errors[0].Err, "query refused") {
		t.Fatalf("errors %+v", res.Errors)
	}
}

func TestCheckBoundsLookups(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: text/html\r\n\r\n")
	for i := range 500 {
		fmt.Fprintf(&b, "<a href=\"https://www.host%d.example/x\">%d</a>\r\n", i, i)
	}
	b.WriteString("<a href=\"https://listed.example/\">last</a>\r\n")
	for _, tc := range []struct {
		name       string
		maxHosts   int
		maxLookups int
	}{
		{"500 links cost at most max_lookups (default)", 1000, 0},
		{"500 links cost at most max_lookups (5)", 1000, 5},
		{"max_hosts bounds before max_lookups", 10, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakedns.Start(t, world)
			l := newLists(t, links.Config{Zones: zones[:2], MaxLookups: tc.maxLookups}, newResolver(t, srv))
			got := links.Extract(strings.NewReader(b.String()), links.Options{MaxHosts: tc.maxHosts})
			res := l.Check(context.Background(), got.Hosts)
			want := tc.maxLookups
			if want == 0 {
				want = links.DefaultMaxLookups
			}
			want = min(want, 2*len(got.Hosts))
			// One lookup is one LookupIPAddr: A and AAAA.
			if res.Lookups != want || srv.Total() > 2*want {
				t.Fatalf("lookups %d, DNS questions %d; want %d lookups, at most %d questions", res.Lookups, srv.Total(), want, 2*want)
			}
			if res.NotChecked != 2*len(got.Hosts)-want {
				t.Fatalf("not checked %d of %d hosts", res.NotChecked, len(got.Hosts))
			}
			if res.Listed() {
				t.Fatalf("the listed link comes after the bound, yet %v", listingStrings(res))
			}
		})
	}
}

func TestCheckTimeoutBounded(t *testing.T) {
	srv := fakedns.Start(t, world+"\n"+strings.Join(func() []string {
		var out []string
		for i := range 30 {
			out = append(out, fmt.Sprintf("slow%d.example.dbl.test. TIMEOUT", i))
		}
		return out
	}(), "\n"))
	l := newLists(t, links.Config{Zones: zones[:1], MaxLookups: 30, Concurrency: 2, Timeout: 150 * time.Millisecond}, newResolver(t, srv))
	var hosts []links.Host
	for i := range 30 {
		hosts = append(hosts, links.Host{Name: fmt.Sprintf("slow%d.example", i)})
	}
	start := time.Now()
	res := l.Check(context.Background(), hosts)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("Check took %v with a 150ms timeout", d)
	}
	if res.Listed() || len(res.Errors) != 30 || res.Answered != 0 {
		t.Fatalf("listed %v, %d errors (want 30: every host unanswered)", res.Listed(), len(res.Errors))
	}
}

func TestCheckCallerDeadlineWins(t *testing.T) {
	srv := fakedns.Start(t, world)
	l := newLists(t, links.Config{Zones: zones[:1], Timeout: time.Minute}, newResolver(t, srv))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := l.Check(ctx, names("slow.example"))
	if d := time.Since(start); d > 1500*time.Millisecond || len(res.Errors) != 1 {
		t.Fatalf("took %v, errors %+v", d, res.Errors)
	}
}

func TestNewListsRejectsBadConfig(t *testing.T) {
	_, err := links.NewLists(links.Config{Zones: []links.Zone{
		{Zone: "", Kind: links.KindDBL},
		{Zone: "x.test", Kind: "rbl"},
		{Zone: "y.test", Kind: links.KindDBL, Mask: 4},
		{Zone: "z.test", Kind: links.KindURIBL, Mask: 3},
	}, MaxLookups: -1}, fakeResolver{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"zones[0]", "zones[1]", "zones[2]", "zones[3]", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := links.NewLists(links.Config{Zones: zones}, nil); err == nil {
		t.Error("no resolver accepted")
	}
}

func TestInterpret(t *testing.T) {
	a := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	tests := []struct {
		name   string
		zone   links.Zone
		ips    []netip.Addr
		listed bool
		err    bool
	}{
		{"DBL 127.0.1.2 listed", links.Zone{Zone: "d", Kind: links.KindDBL}, a("127.0.1.2"), true, false},
		{"DBL 127.0.1.1 undocumented", links.Zone{Zone: "d", Kind: links.KindDBL}, a("127.0.1.1"), false, true},
		{"DBL 127.255.255.254 error", links.Zone{Zone: "d", Kind: links.KindDBL}, a("127.255.255.254"), false, true},
		{"SURBL 127.0.0.1 error", links.Zone{Zone: "s", Kind: links.KindSURBL, Mask: links.DefaultSURBLMask}, a("127.0.0.1"), false, true},
		{"URIBL 127.0.0.1 error", links.Zone{Zone: "u", Kind: links.KindURIBL, Mask: links.DefaultURIBLMask}, a("127.0.0.1"), false, true},
		{"URIBL 127.0.0.14 listed (black among them)", links.Zone{Zone: "u", Kind: links.KindURIBL, Mask: links.DefaultURIBLMask}, a("127.0.0.14"), true, false},
		{"a listing wins over an error among records", links.Zone{Zone: "d", Kind: links.KindDBL}, append(a("127.255.255.254"), a("127.0.1.5")...), true, false},
		{"no records: not listed", links.Zone{Zone: "d", Kind: links.KindDBL}, nil, false, false},
		{"IP zone 127.0.0.1 undocumented", links.Zone{Zone: "z", Kind: links.KindIP}, a("127.0.0.1"), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.zone.Interpret(tc.ips)
			if got.Listed != tc.listed || (got.Err != "") != tc.err {
				t.Fatalf("Interpret = %+v", got)
			}
		})
	}
}

// fakeResolver answers nothing; for config tests only.
type fakeResolver struct{}

func (fakeResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) { return nil, nil }
