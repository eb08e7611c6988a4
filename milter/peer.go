package milter

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Who may speak milter. A milter connection carries the MTA's word for
// everything the gateway decides on: the SASL login, the client address,
// the queue id. A process that can open the listener can claim to be any
// customer, spend its quotas and re-label its messages. So every accepted
// connection is checked before it is handed to the milter library (before
// it holds a connection slot), and one that is not from an allowed peer is
// closed at once:
//
//   - on a Unix socket, the peer's uid at connect time (SO_PEERCRED) must be
//     one of milter.allowed_peers;
//   - on TCP, a peer whose socket is on this host (found by its 4-tuple with
//     the kernel's sock_diag, whatever the address it connected from) is
//     judged by the uid that owns that socket, the same way; a peer on
//     another host must be inside milter.allowed_mtas. A loopback peer whose
//     socket cannot be found (it closed already) is refused.

// Refusal reasons, the label values of the refused-peer metric.
const (
	// RefusedUser: a peer on this host whose user is not allowed.
	RefusedUser = "user"
	// RefusedNetwork: a remote peer outside milter.allowed_mtas.
	RefusedNetwork = "network"
	// RefusedUnverified: the peer's credentials could not be read (it
	// closed at once, or the lookup failed).
	RefusedUnverified = "unverified"
)

// RefusedReasons are every refusal reason, for metrics that export each
// from the start.
var RefusedReasons = []string{RefusedUser, RefusedNetwork, RefusedUnverified}

// PeerObserver is told of each connection refused because its peer is not
// allowed (metrics).
type PeerObserver interface {
	PeerRefused(reason string)
}

// DefaultPeers are the users allowed when milter.allowed_peers is not set:
// Postfix's smtpd and cleanup run as "postfix"; root for the administrator's
// tools.
var DefaultPeers = []string{"postfix", "root"}

// ResolvePeers turns user names and decimal uids into uids. Names that are
// no user on this host are returned in unknown (they allow nobody).
func ResolvePeers(names []string) (uids []uint32, unknown []string) {
	for _, n := range names {
		if id, err := strconv.ParseUint(n, 10, 32); err == nil {
			uids = append(uids, uint32(id))
			continue
		}
		u, err := user.Lookup(n)
		if err != nil {
			unknown = append(unknown, n)
			continue
		}
		id, err := strconv.ParseUint(u.Uid, 10, 32)
		if err != nil {
			unknown = append(unknown, n)
			continue
		}
		uids = append(uids, uint32(id))
	}
	slices.Sort(uids)
	return slices.Compact(uids), unknown
}

// Access is who may connect: the uids of local peers and the networks of
// remote ones.
type Access struct {
	// UIDs are the users whose processes may connect (milter.allowed_peers).
	UIDs []uint32
	// Networks are the addresses remote MTAs may connect from
	// (milter.allowed_mtas). When set, every TCP peer's address must be
	// inside; when empty, no peer from another host is allowed (a
	// loopback listener has none).
	Networks []netip.Prefix
}

func (a *Access) uidAllowed(uid uint32) bool { return slices.Contains(a.UIDs, uid) }

func (a *Access) inNetworks(ad netip.Addr) bool {
	ad = ad.Unmap()
	for _, p := range a.Networks {
		if p.Contains(ad) {
			return true
		}
	}
	return false
}

// verdict is the outcome of checking one peer.
type verdict struct {
	ok     bool
	reason string
	uid    int64 // -1: unknown
	detail string
}

// peerListener checks every accepted connection's peer and closes those
// not allowed, so that they never reach the connection limit or the milter
// library. It never fails Accept because of a peer.
type peerListener struct {
	net.Listener
	access *atomic.Pointer[Access]
	owner  ownerLookup // nil on a Unix socket
	log    *slog.Logger
	obs    PeerObserver
	lim    logLimiter
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		v := l.check(c)
		if v.ok {
			return c, nil
		}
		_ = c.Close()
		if l.obs != nil {
			l.obs.PeerRefused(v.reason)
		}
		if n, ok := l.lim.allow(time.Now()); ok {
			attrs := []any{"remote", c.RemoteAddr().String(), "reason", v.reason, "uid", v.uid, "detail", v.detail}
			if n > 0 {
				attrs = append(attrs, "unlogged_since_last", n)
			}
			l.log.Warn("milter connection refused: peer not allowed", attrs...)
		}
	}
}

// check judges one connection's peer. It never panics on an odd
// connection: anything it cannot read is refused as unverified.
func (l *peerListener) check(c net.Conn) (v verdict) {
	defer func() {
		if p := recover(); p != nil {
			v = verdict{reason: RefusedUnverified, uid: -1, detail: fmt.Sprintf("panic checking the peer: %v", p)}
		}
	}()
	a := l.access.Load()
	switch cc := c.(type) {
	case *net.UnixConn:
		uid, err := unixPeerUID(cc)
		if err != nil {
			return verdict{reason: RefusedUnverified, uid: -1, detail: "SO_PEERCRED: " + err.Error()}
		}
		if !a.uidAllowed(uid) {
			return verdict{reason: RefusedUser, uid: int64(uid), detail: "user not in milter.allowed_peers"}
		}
		return verdict{ok: true, uid: int64(uid)}
	case *net.TCPConn:
		remote, err1 := netip.ParseAddrPort(cc.RemoteAddr().String())
		local, err2 := netip.ParseAddrPort(cc.LocalAddr().String())
		if err1 != nil || err2 != nil {
			return verdict{reason: RefusedUnverified, uid: -1, detail: "unreadable address"}
		}
		if len(a.Networks) > 0 && !a.inNetworks(remote.Addr()) {
			return verdict{reason: RefusedNetwork, uid: -1, detail: "address not in milter.allowed_mtas"}
		}
		if l.owner == nil {
			return verdict{reason: RefusedUnverified, uid: -1, detail: "no owner lookup"}
		}
		o, err := l.owner.lookup(local, remote)
		switch {
		case err != nil:
			return verdict{reason: RefusedUnverified, uid: -1, detail: "sock_diag: " + err.Error()}
		case o.found && !o.live:
			return verdict{reason: RefusedUnverified, uid: -1, detail: "the peer's socket on this host is closing"}
		case o.found:
			if !a.uidAllowed(o.uid) {
				return verdict{reason: RefusedUser, uid: int64(o.uid), detail: "user not in milter.allowed_peers"}
			}
			return verdict{ok: true, uid: int64(o.uid)}
		case remote.Addr().Unmap().IsLoopback():
			return verdict{reason: RefusedUnverified, uid: -1, detail: "loopback peer's socket not found (closed?)"}
		case len(a.Networks) == 0:
			return verdict{reason: RefusedNetwork, uid: -1, detail: "remote peer and no milter.allowed_mtas"}
		}
		return verdict{ok: true, uid: -1}
	}
	return verdict{reason: RefusedUnverified, uid: -1, detail: fmt.Sprintf("unsupported connection type %T", c)}
}

// owner is what sock_diag tells of a peer's socket on this host.
type owner struct {
	found bool
	// live is false for a socket no process holds any more (closing,
	// TIME_WAIT): its uid means nothing.
	live bool
	uid  uint32
}

// ownerLookup finds the socket at the other end of a TCP connection when
// it is on this host.
type ownerLookup interface {
	lookup(local, remote netip.AddrPort) (owner, error)
}

// logLimiter bounds the refusal log under a flood: 20 lines a second,
// then one line per second telling how many went unlogged.
type logLimiter struct {
	mu      sync.Mutex
	second  time.Time
	n       int
	dropped int
}

const refusedLinesPerSecond = 20

// allow reports whether to log now, and how many refusals went unlogged
// before this one.
func (l *logLimiter) allow(now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := now.Truncate(time.Second)
	if !s.Equal(l.second) {
		l.second, l.n = s, 0
	}
	if l.n >= refusedLinesPerSecond {
		l.dropped++
		return 0, false
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return d, true
}
