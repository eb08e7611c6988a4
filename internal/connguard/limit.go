package connguard

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits cap the connections one listener holds.
type Limits struct {
	// Max is the connections held at once, all clients together.
	Max int
	// PerClient is the connections one client holds at once: one IPv4
	// address, or one IPv6 /64 (what one host is usually given).
	PerClient int
}

// refusedLogEvery is how often, at most, a listener logs the connections
// it refused over its caps (a flood would otherwise write a line each).
const refusedLogEvery = 10 * time.Second

// LimitListener holds at most Limits connections: one over a cap is
// closed as soon as it is accepted (never left waiting in the backlog,
// where a flood would hold back every other client too).
type LimitListener struct {
	net.Listener
	name string
	lim  Limits
	log  *slog.Logger
	now  func() time.Time

	mu        sync.Mutex
	total     int
	perClient map[netip.Prefix]int
	lastLog   time.Time
	unlogged  uint64

	refused atomic.Uint64
}

// Limit wraps ln with lim (a cap of 0 is no cap); name goes into the
// log lines.
func Limit(ln net.Listener, name string, lim Limits, log *slog.Logger) *LimitListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LimitListener{Listener: ln, name: name, lim: lim, log: log, now: time.Now, perClient: map[netip.Prefix]int{}}
}

// ClientKey is the client a remote address counts for: the IPv4 address,
// or the IPv6 /64; ok is false for an address that is not IP (a Unix
// socket's peer), which counts only towards Max.
func ClientKey(a net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p, true
}

// Accept returns the next connection within the caps; those over a cap
// are closed at once.
func (l *LimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, isIP := ClientKey(c.RemoteAddr())
		l.mu.Lock()
		over := l.lim.Max > 0 && l.total >= l.lim.Max
		if !over && isIP && l.lim.PerClient > 0 && l.perClient[key] >= l.lim.PerClient {
			over = true
		}
		if !over {
			l.total++
			if isIP {
				l.perClient[key]++
			}
			l.mu.Unlock()
			return &limitedConn{Conn: c, l: l, key: key, isIP: isIP}, nil
		}
		l.refused.Add(1)
		l.unlogged++
		now := l.now()
		logIt := l.lastLog.IsZero() || now.Sub(l.lastLog) >= refusedLogEvery
		var n uint64
		if logIt {
			n, l.unlogged, l.lastLog = l.unlogged, 0, now
		}
		held, heldClient := l.total, l.perClient[key]
		l.mu.Unlock()
		_ = c.Close()
		if logIt {
			l.log.Warn("connection refused: over the listener's cap", "listener", l.name, "remote", c.RemoteAddr().String(),
				"held", held, "max", l.lim.Max, "held_by_client", heldClient, "per_client", l.lim.PerClient,
				"refused_since_last_line", n)
		}
	}
}

// Held is the number of connections held now.
func (l *LimitListener) Held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Refused is the number of connections closed over a cap so far.
func (l *LimitListener) Refused() uint64 { return l.refused.Load() }

// Limits returns the caps in force.
func (l *LimitListener) Limits() Limits { return l.lim }

// Name is the listener's name in the log lines.
func (l *LimitListener) Name() string { return l.name }

// Retry is the RetryListener l wraps, or nil.
func (l *LimitListener) Retry() *RetryListener {
	r, _ := l.Listener.(*RetryListener)
	return r
}

func (l *LimitListener) release(key netip.Prefix, isIP bool) {
	l.mu.Lock()
	l.total--
	if isIP {
		if l.perClient[key]--; l.perClient[key] <= 0 {
			delete(l.perClient, key)
		}
	}
	l.mu.Unlock()
}

// limitedConn gives its slot back when closed (once, however often Close
// is called).
type limitedConn struct {
	net.Conn
	l    *LimitListener
	key  netip.Prefix
	isIP bool
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key, c.isIP) })
	return err
}
