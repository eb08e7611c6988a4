package customer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/testkit/custgen"
)

// naiveIdentify is the reference the index must agree with: exact logins,
// then globs in config order, then the longest network (first in config
// order among equals).
func naiveIdentify(cfg *config.Config, login string, client netip.Addr) (string, string) {
	if login != "" {
		for _, c := range cfg.Customers {
			for _, l := range c.Logins {
				if !hasMeta(l) && l == login {
					return c.ID, ByLogin
				}
			}
		}
		for _, c := range cfg.Customers {
			for _, l := range c.Logins {
				if ok, _ := path.Match(l, login); hasMeta(l) && ok {
					return c.ID, ByLogin
				}
			}
		}
	}
	client = client.Unmap()
	best, bits := "", -1
	for _, c := range cfg.Customers {
		for _, n := range c.Networks {
			p, _ := config.ParsePrefix(n)
			if p.Contains(client) && p.Bits() > bits {
				best, bits = c.ID, p.Bits()
			}
		}
	}
	if bits >= 0 {
		return best, ByNetwork
	}
	return "", ""
}

// TestIndexAgreesWithScan compares the index with a scan in config order
// on random directories: overlapping globs (prefix, suffix, both, neither),
// nested networks of both families.
func TestIndexAgreesWithScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "ab", "abc", "b", "x@d.example", "@d.example", "-", "web"}
	pick := func() string { return words[r.IntN(len(words))] }
	globOf := func() string {
		switch r.IntN(7) {
		case 0:
			return pick() + "*"
		case 1:
			return "*" + pick()
		case 2:
			return pick() + "?" + pick()
		case 3:
			return "*"
		case 4:
			return "[ab]" + pick() + "*"
		case 5:
			return pick() + "*" + pick()
		default:
			return "?" + pick()
		}
	}
	nets := []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "0.0.0.0/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::5", "::/0", "192.0.2.128/25", "::ffff:10.1.2.0/120"}
	addrs := []string{"10.1.2.3", "10.1.2.4", "10.1.9.9", "10.9.9.9", "11.0.0.1", "2001:db8:1::5", "2001:db8:1::6", "2001:db8:2::1", "2002::1", "::ffff:10.1.2.3", "192.0.2.200", "192.0.2.1"}
	for round := 0; round < 200; round++ {
		cfg := &config.Config{}
		for i := 0; i < 1+r.IntN(6); i++ {
			c := config.Customer{ID: fmt.Sprintf("c%d", i)}
			for j := 0; j < r.IntN(4); j++ {
				if r.IntN(2) == 0 {
					c.Logins = append(c.Logins, globOf())
				} else {
					c.Logins = append(c.Logins, pick()+pick())
				}
			}
			for j := 0; j < r.IntN(3); j++ {
				c.Networks = append(c.Networks, nets[r.IntN(len(nets))])
			}
			cfg.Customers = append(cfg.Customers, c)
		}
		d, err := NewDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 50; k++ {
			login := ""
			if r.IntN(4) > 0 {
				login = pick() + pick() + []string{"", pick()}[r.IntN(2)]
			}
			a := netip.MustParseAddr(addrs[r.IntN(len(addrs))])
			wantID, wantBy := naiveIdentify(cfg, login, a)
			c, by := d.Identify(login, a)
			got := ""
			if c != nil {
				got = c.ID
			}
			if got != wantID || by != wantBy {
				t.Fatalf("round %d: Identify(%q, %s) = %q by %q, the scan says %q by %q\nconfig: %+v", round, login, a, got, by, wantID, wantBy, cfg.Customers)
			}
		}
	}
}

// scaleConfig is n customers with logins exact logins and one glob each,
// and one network each (custgen.Config's shape, built without YAML).
func scaleConfig(n, logins int) *config.Config {
	cfg := &config.Config{Customers: make([]config.Customer, n)}
	for i := range cfg.Customers {
		c := &cfg.Customers[i]
		c.ID = fmt.Sprintf("c%d", i)
		c.Logins = make([]string, 0, logins+1)
		c.Logins = append(c.Logins, c.ID)
		for j := 1; j < logins; j++ {
			c.Logins = append(c.Logins, fmt.Sprintf("c%d-l%d", i, j))
		}
		c.Logins = append(c.Logins, c.ID+"-*")
		c.Networks = []string{custgen.Network(i)}
		c.Domains = []string{c.ID + ".example"}
	}
	return cfg
}

func TestScaleDirectory(t *testing.T) {
	cfg := scaleConfig(2000, 2)
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 999, 1999} {
		id := fmt.Sprintf("c%d", i)
		for _, tc := range []struct{ login, addr, by string }{
			{id, "192.0.2.1", ByLogin},
			{id + "-l1", "192.0.2.1", ByLogin},
			{id + "-anything", "192.0.2.1", ByLogin},
			{"", custgen.Addr(i), ByNetwork},
			{"stranger", custgen.Addr(i), ByNetwork},
		} {
			c, by := d.Identify(tc.login, netip.MustParseAddr(tc.addr))
			if c == nil || c.ID != id || by != tc.by {
				t.Errorf("Identify(%q, %s) = %v by %q, want %s by %s", tc.login, tc.addr, c, by, id, tc.by)
			}
		}
	}
	if c, _ := d.Identify("nobody", netip.MustParseAddr("192.0.2.1")); c != nil {
		t.Errorf("unknown login and client identified as %s", c.ID)
	}
}

// BenchmarkIdentify measures identification at the scale: 100,000
// customers, 1,000,000 SASL logins (nine exact and one glob each),
// 100,000 networks. It reports p50/p99 per lookup over customers at the
// first, middle and last position, and the directory's heap.
//
//	go test -run '^$' -bench Identify -benchtime 200000x ./customer/
func BenchmarkIdentify(b *testing.B) {
	const n = 100_000
	cfg := scaleConfig(n, 9)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	d, err := NewDirectory(cfg)
	if err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("directory of %d customers, %d logins, %d networks: built in %v, heap %.1f MB",
		n, n*10, n, build.Round(time.Millisecond), float64(after.HeapAlloc-before.HeapAlloc)/1e6)
	positions := []int{0, n / 2, n - 1}
	for _, kind := range []string{"exact", "glob", "network"} {
		b.Run(kind, func(b *testing.B) {
			type q struct {
				login string
				addr  netip.Addr
			}
			var qs []q
			for _, p := range positions {
				id := fmt.Sprintf("c%d", p)
				switch kind {
				case "exact":
					qs = append(qs, q{id + "-l8", netip.MustParseAddr("192.0.2.1")})
				case "glob":
					qs = append(qs, q{id + "-newbox", netip.MustParseAddr("192.0.2.1")})
				default:
					qs = append(qs, q{"", netip.MustParseAddr(custgen.Addr(p))})
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x := qs[i%len(qs)]
				t0 := time.Now()
				c, _ := d.Identify(x.login, x.addr)
				lat = append(lat, time.Since(t0))
				if c == nil {
					b.Fatal("unidentified")
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Nanoseconds()) }
			b.ReportMetric(pct(0.50), "p50-ns")
			b.ReportMetric(pct(0.99), "p99-ns")
		})
	}
}
