// Package fakedns is an in-process DNS server on loopback for tests: it
// serves zones written in a small text format, so that no test touches the
// internet and every DNS answer a test depends on sits next to it (the
// `.dns` siblings of golden `.eml` files).
//
// # Zone format
//
// One record per line, in the presentation format of RFC 1035 §5.1 as
// github.com/miekg/dns parses it: owner name, optional TTL (default 300),
// optional class, type, data. Names are absolute (a missing trailing dot
// is added). Blank lines and lines starting with '#' or ';' are ignored.
//
//	example.com.                TXT  "v=spf1 ip4:192.0.2.1 -all"
//	_dmarc.example.com.   3600  TXT  "v=DMARC1; p=reject"
//	example.com.                MX   10 mx.example.com.
//	mx.example.com.             A    192.0.2.25
//	www.example.com.            CNAME example.com.
//	example.com.                SOA  ns.example.com. admin.example.com. 1 3600 600 86400 60
//
// Besides records, a line may give a name a behaviour instead of data:
//
//	broken.example.    SERVFAIL     every question about the name gets SERVFAIL
//	refused.example.   REFUSED      ... gets REFUSED
//	slow.example.      TIMEOUT      ... gets no reply at all
//	lazy.example.      DELAY 300ms  answers about the name come after 300ms
//	spoof.example.     MISMATCH     replies carry the query's ID but another question
//
// # Answers
//
// The server answers like a recursive resolver would for these zones: the
// records of the asked type (following CNAMEs inside the data), NODATA
// (NOERROR, no answer) when the name or a name below it exists, and
// NXDOMAIN otherwise. Negative answers carry the SOA of the closest
// enclosing zone given, or a synthetic one at the root whose TTL and
// MINIMUM are NegativeTTL seconds, so that negative caching (RFC 2308) can
// be tested. UDP replies larger than the client's buffer are truncated
// (TC set), so clients retry over TCP as they should.
package fakedns

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// NegativeTTL is the TTL and MINIMUM of the synthetic SOA of negative
// answers for names outside any SOA given in the zone.
const NegativeTTL = 300

// Zone is a parsed set of records and behaviours.
type Zone struct {
	records   []dns.RR
	behaviour map[string]behaviour
}

type behaviour struct {
	kind  string // SERVFAIL, REFUSED, TIMEOUT, MISMATCH or DELAY
	delay time.Duration
}

// ParseZone parses zone text (see the package documentation).
func ParseZone(text string) (*Zone, error) {
	z := &Zone{behaviour: map[string]behaviour{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			name := dns.CanonicalName(f[0])
			switch strings.ToUpper(f[1]) {
			case "SERVFAIL", "REFUSED", "TIMEOUT", "MISMATCH":
				if len(f) != 2 {
					return nil, fmt.Errorf("line %d: %s takes no argument", n, f[1])
				}
				z.behaviour[name] = behaviour{kind: strings.ToUpper(f[1])}
				continue
			case "DELAY":
				if len(f) != 3 {
					return nil, fmt.Errorf("line %d: want NAME DELAY DURATION", n)
				}
				d, err := time.ParseDuration(f[2])
				if err != nil {
					return nil, fmt.Errorf("line %d: %v", n, err)
				}
				z.behaviour[name] = behaviour{kind: "DELAY", delay: d}
				continue
			}
		}
		if !strings.HasSuffix(f[0], ".") {
			line = f[0] + "." + line[len(f[0]):]
		}
		rr, err := dns.NewRR("$TTL 300\n" + line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if rr == nil {
			continue
		}
		rr.Header().Name = dns.CanonicalName(rr.Header().Name)
		z.records = append(z.records, rr)
	}
	return z, sc.Err()
}

// Server is a running fake DNS server, on UDP and TCP on the same port.
type Server struct {
	udp, tcp *dns.Server
	addr     string

	mu      sync.Mutex
	zone    *Zone
	queries map[string]int
	sources map[string][]string
	total   int
}

// Start parses zone and starts a server on 127.0.0.1, stopped when the test
// ends. A bad zone fails the test.
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	s, err := New(zone)
	if err != nil {
		t.Fatalf("fakedns: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartFile is Start with the zone read from a file (a golden case's
// `.dns` sibling).
func StartFile(t testing.TB, path string) *Server {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fakedns: %v", err)
	}
	return Start(t, string(data))
}

// New parses zone and starts a server on a free port of 127.0.0.1.
func New(zone string) (*Server, error) {
	z, err := ParseZone(zone)
	if err != nil {
		return nil, err
	}
	s := &Server{zone: z, queries: map[string]int{}, sources: map[string][]string{}}
	pc, l, err := listenPair()
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: l, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	<-started
	<-started
	return s, nil
}

// listenPair listens on UDP and TCP on the same free port of 127.0.0.1.
// The UDP port is picked by the kernel; when its TCP twin is taken (tests
// running in parallel), another port is tried.
func listenPair() (net.PacketConn, net.Listener, error) {
	var last error
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		last = err
	}
	return nil, nil, last
}

// Addr is the server's HOST:PORT, for dns.servers.
func (s *Server) Addr() string { return s.addr }

// Close stops the server.
func (s *Server) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Set replaces the zone (a test changing a record between two messages).
func (s *Server) Set(zone string) error {
	z, err := ParseZone(zone)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.zone = z
	s.mu.Unlock()
	return nil
}

// Queries returns how many questions about name (any type, any case) the
// server received.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[dns.CanonicalName(name)]
}

// Sources returns the client addresses (IP:PORT) the questions about name
// came from over UDP, in the order received: a test tells from them
// whether a client reuses its sockets.
func (s *Server) Sources(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sources[dns.CanonicalName(name)]...)
}

// Total returns how many questions the server received.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	s.mu.Lock()
	s.queries[name]++
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		s.sources[name] = append(s.sources[name], w.RemoteAddr().String())
	}
	s.total++
	z := s.zone
	s.mu.Unlock()

	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if b, ok := z.behaviour[name]; ok {
		switch b.kind {
		case "TIMEOUT":
			return
		case "SERVFAIL":
			m.Rcode = dns.RcodeServerFailure
			_ = w.WriteMsg(m)
			return
		case "REFUSED":
			m.Rcode = dns.RcodeRefused
			_ = w.WriteMsg(m)
			return
		case "MISMATCH":
			// What an off-path spoofer who guessed the ID would send: an
			// answer to a question nobody asked here.
			m.Question[0].Name = "other." + m.Question[0].Name
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 66)})
			_ = w.WriteMsg(m)
			return
		case "DELAY":
			time.Sleep(b.delay)
		}
	}
	z.answer(m, name, q.Qtype)
	size := dns.MinMsgSize
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), false)
		size = int(o.UDPSize())
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer fills m with the answer to name/qtype.
func (z *Zone) answer(m *dns.Msg, name string, qtype uint16) {
	for hops := 0; hops < 8; hops++ {
		var cname dns.RR
		found := false
		for _, rr := range z.records {
			h := rr.Header()
			if h.Name != name {
				continue
			}
			if h.Rrtype == qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if h.Rrtype == dns.TypeCNAME {
				cname = rr
			}
		}
		if found {
			return
		}
		if cname == nil || qtype == dns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = dns.CanonicalName(cname.(*dns.CNAME).Target)
	}
	if len(m.Answer) > 0 && z.exists(name) {
		// A CNAME chain to a name without records of the type: NODATA of
		// the target, the chain kept.
		m.Ns = append(m.Ns, z.soaFor(name))
		return
	}
	if !z.exists(name) {
		m.Rcode = dns.RcodeNameError
	}
	m.Ns = append(m.Ns, z.soaFor(name))
}

// exists reports whether name or a name below it has records (RFC 8020: a
// name with descendants exists, as an empty non-terminal).
func (z *Zone) exists(name string) bool {
	for _, rr := range z.records {
		n := rr.Header().Name
		if n == name || strings.HasSuffix(n, "."+name) || name == "." {
			return true
		}
	}
	for n := range z.behaviour {
		if n == name || strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

// soaFor returns the SOA of the closest enclosing zone of name, or the
// synthetic root SOA.
func (z *Zone) soaFor(name string) dns.RR {
	var best *dns.SOA
	for _, rr := range z.records {
		soa, ok := rr.(*dns.SOA)
		if !ok {
			continue
		}
		n := soa.Hdr.Name
		if (n == name || strings.HasSuffix(name, "."+n)) && (best == nil || len(n) > len(best.Hdr.Name)) {
			best = soa
		}
	}
	if best != nil {
		return dns.Copy(best)
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: NegativeTTL},
		Ns:      "a.root-servers.invalid.",
		Mbox:    "hostmaster.invalid.",
		Serial:  1,
		Refresh: 1800,
		Retry:   900,
		Expire:  604800,
		Minttl:  NegativeTTL,
	}
}
