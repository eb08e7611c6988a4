package fakedns

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var testZone = `
# comment
example.com.            TXT   "v=spf1 ip4:192.0.2.1 -all"
_dmarc.example.com 3600 TXT   "v=DMARC1; p=reject"
example.com.            MX    10 mx.example.com.
mx.example.com.         A     192.0.2.25
www.example.com.        CNAME example.com.
deep.sub.example.org.   A     192.0.2.7
zone.example.net.       SOA   ns.example.net. admin.example.net. 1 3600 600 86400 42
broken.example.         SERVFAIL
refused.example.        REFUSED
slow.example.           TIMEOUT
lazy.example.           DELAY 50ms
big.example.            TXT   "` + strings.Repeat("a", 250) + `" "` + strings.Repeat("b", 250) + `" "` + strings.Repeat("c", 250) + `"
`

func ask(t *testing.T, s *Server, net, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: net, Timeout: 300 * time.Millisecond}
	r, _, err := c.Exchange(m, s.Addr())
	return r, err
}

func TestAnswers(t *testing.T) {
	s := Start(t, testZone)
	tests := []struct {
		name     string
		qname    string
		qtype    uint16
		rcode    int
		answers  int
		soaMin   uint32
		wantText string
	}{
		{"txt", "example.com.", dns.TypeTXT, dns.RcodeSuccess, 1, 0, "v=spf1"},
		{"case-insensitive, no trailing dot in zone", "_DMARC.Example.COM.", dns.TypeTXT, dns.RcodeSuccess, 1, 0, "p=reject"},
		{"mx", "example.com.", dns.TypeMX, dns.RcodeSuccess, 1, 0, "mx.example.com."},
		{"cname followed", "www.example.com.", dns.TypeTXT, dns.RcodeSuccess, 2, 0, "v=spf1"},
		{"nodata", "example.com.", dns.TypeAAAA, dns.RcodeSuccess, 0, NegativeTTL, ""},
		{"empty non-terminal is nodata", "sub.example.org.", dns.TypeA, dns.RcodeSuccess, 0, NegativeTTL, ""},
		{"nxdomain", "nope.example.com.", dns.TypeTXT, dns.RcodeNameError, 0, NegativeTTL, ""},
		{"nxdomain under a zone's soa", "x.zone.example.net.", dns.TypeTXT, dns.RcodeNameError, 0, 42, ""},
		{"servfail", "broken.example.", dns.TypeTXT, dns.RcodeServerFailure, 0, 0, ""},
		{"refused", "refused.example.", dns.TypeA, dns.RcodeRefused, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ask(t, s, "udp", tt.qname, tt.qtype)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode || len(r.Answer) != tt.answers {
				t.Fatalf("rcode %s, %d answers; want %s, %d\n%v", dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tt.rcode], tt.answers, r)
			}
			if tt.soaMin != 0 {
				if len(r.Ns) != 1 || r.Ns[0].(*dns.SOA).Minttl != tt.soaMin {
					t.Fatalf("authority %v, want a SOA with minimum %d", r.Ns, tt.soaMin)
				}
			}
			if tt.wantText != "" && !strings.Contains(r.Answer[len(r.Answer)-1].String(), tt.wantText) {
				t.Fatalf("answer %v lacks %q", r.Answer, tt.wantText)
			}
		})
	}
	if n := s.Queries("EXAMPLE.com"); n != 3 {
		t.Fatalf("Queries(example.com) = %d, want 3", n)
	}
}

func TestTimeoutDelayAndTruncation(t *testing.T) {
	s := Start(t, testZone)
	if _, err := ask(t, s, "udp", "slow.example.", dns.TypeA); err == nil {
		t.Fatal("TIMEOUT name answered")
	}
	start := time.Now()
	if _, err := ask(t, s, "udp", "lazy.example.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("DELAY answered after %s", d)
	}
	r, err := ask(t, s, "udp", "big.example.", dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Fatalf("750-byte TXT over 512-byte UDP not truncated")
	}
	r, err = ask(t, s, "tcp", "big.example.", dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 1 || len(strings.Join(r.Answer[0].(*dns.TXT).Txt, "")) != 750 {
		t.Fatalf("tcp answer %v", r)
	}
}

func TestSetAndParseErrors(t *testing.T) {
	s := Start(t, "a.example. A 192.0.2.1")
	if err := s.Set("a.example. A 192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	r, err := ask(t, s, "udp", "a.example.", dns.TypeA)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.2" {
		t.Fatalf("after Set: %v %v", r, err)
	}
	for _, bad := range []string{"a.example. A not-an-ip", "a.example. DELAY soon", "a.example. SERVFAIL now"} {
		if _, err := ParseZone(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseZone(%q) = %v, want a line 1 error", bad, err)
		}
	}
}

func TestSourcesAndMismatch(t *testing.T) {
	s := Start(t, testZone+"spoof.example. MISMATCH\n")
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	co, err := c.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for i := 0; i < 3; i++ {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeTXT)
		if _, _, err := c.ExchangeWithConn(m, co); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ask(t, s, "udp", "example.com.", dns.TypeTXT); err != nil {
		t.Fatal(err)
	}
	src := s.Sources("EXAMPLE.com")
	if len(src) != 4 || src[0] != co.LocalAddr().String() || src[1] != src[0] || src[2] != src[0] || src[3] == src[0] {
		t.Fatalf("Sources = %v, want 3 from %s then one from another port", src, co.LocalAddr())
	}
	if _, err := ask(t, s, "tcp", "example.com.", dns.TypeTXT); err != nil || len(s.Sources("example.com")) != 4 {
		t.Fatalf("tcp question counted as a UDP source: %v %v", s.Sources("example.com"), err)
	}
	r, err := ask(t, s, "udp", "spoof.example.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Question) != 1 || r.Question[0].Name == "spoof.example." || len(r.Answer) != 1 {
		t.Fatalf("MISMATCH reply %v", r)
	}
}
