package resolver

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxIdleUDP bounds the idle sockets kept per server; a query finding none
// dials one, and a socket coming back to a full pool is closed.
const maxIdleUDP = 32

// udpPool keeps idle connected UDP sockets to one upstream server on
// loopback, each used by one query at a time.
//
// Reusing a socket keeps its source port for many queries, which RFC 5452
// §9.2 forbids towards a server across a network: source-port
// randomization (§4, §10) is what makes an off-path attacker guess 32 bits
// (ID and port) rather than 16 (the ID alone). On loopback there is no
// path to be off: packets with a loopback source arriving on another
// interface are dropped as martians (RFC 1122 §3.2.1.3 (g)), and a
// connected socket only takes datagrams from its server's address and
// port. So the pool is made only for loopback servers (the local caching
// resolver a mail server is expected to run); a remote server gets a fresh
// socket, on a random port, for every query.
//
// A socket goes back to the pool only after an exchange that ended with
// the reply to its query (the ID matched: miekg/dns skips datagrams with
// another ID, such as late replies to earlier queries, RFC 5452 §9.1; and
// the question matched, checked by exchange). A socket whose exchange
// failed or timed out is closed, so a reply still on its way can never be
// read as the answer to a later query. Idle sockets the Cache no longer
// reaches are closed by the net package's finalizers.
type udpPool struct {
	addr    string
	timeout time.Duration // when the context has no deadline

	mu   sync.Mutex
	idle []net.Conn
}

// udpBufs are read buffers large enough for any UDP datagram, shared by
// the pools' exchanges (one per exchange in flight).
var udpBufs = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

// reusable reports whether sockets to the server at addr (IP:PORT) may be
// reused: only for a loopback address (see udpPool).
func reusable(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// get returns an idle socket or dials a new one.
func (p *udpPool) get(ctx context.Context) (net.Conn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		co := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return co, nil
	}
	p.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "udp", p.addr)
}

// put returns a socket whose last exchange got its reply.
func (p *udpPool) put(co net.Conn) {
	p.mu.Lock()
	if len(p.idle) < maxIdleUDP {
		p.idle = append(p.idle, co)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = co.Close()
}

// idleCount is the number of idle sockets (for tests).
func (p *udpPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// exchange sends req over a pooled socket and reads its reply, skipping
// datagrams with another ID (RFC 5452 §9.1). The socket goes back to the
// pool only when the reply answers req's question; on any error (timeout,
// refused, unreadable reply) it is closed.
func (p *udpPool) exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	co, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	m, err := p.roundTrip(ctx, co, req, *bp)
	if err != nil || !answers(req, m) {
		_ = co.Close()
		return m, err
	}
	p.put(co)
	return m, nil
}

func (p *udpPool) roundTrip(ctx context.Context, co net.Conn, req *dns.Msg, buf []byte) (*dns.Msg, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(p.timeout)
	}
	if err := co.SetDeadline(deadline); err != nil {
		return nil, err
	}
	out, err := req.PackBuffer(buf)
	if err != nil {
		return nil, err
	}
	if _, err := co.Write(out); err != nil {
		return nil, err
	}
	for {
		n, err := co.Read(buf)
		if err != nil {
			return nil, err
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != req.Id {
			// Not a DNS header, or a late reply to an earlier query.
			continue
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			return nil, err
		}
		return m, nil
	}
}

// answers reports whether reply m is to the question of req: same ID and
// the same single question, the name compared case-insensitively (RFC 5452
// §9.1 "the response is accepted only if ... the question section matches",
// RFC 1035 §7.3; names compare without regard to case, RFC 4343 §3).
func answers(req, m *dns.Msg) bool {
	if m == nil || m.Id != req.Id || !m.Response || len(m.Question) != 1 || len(req.Question) != 1 {
		return false
	}
	a, q := m.Question[0], req.Question[0]
	return a.Qtype == q.Qtype && a.Qclass == q.Qclass && equalFold(a.Name, q.Name)
}

// equalFold compares two DNS names ignoring ASCII case only (RFC 4343 §3:
// other octets compare exactly).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
