package milter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// unixPeerUID returns the uid of the process that connected to a Unix
// socket, as the kernel recorded it at connect(2) (SO_PEERCRED): one
// getsockopt(2).
func unixPeerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// sockDiag looks up the peer's socket of a TCP connection with one
// NETLINK_SOCK_DIAG request (SOCK_DIAG_BY_FAMILY, an exact lookup by the
// 4-tuple, not a dump of the socket table): a constant cost per
// connection, however many sockets the host has. It keeps one netlink
// socket; requests are serialised (the milter accepts one connection at a
// time anyway).
type sockDiag struct {
	mu  sync.Mutex
	fd  int // -1: closed
	seq uint32
	buf []byte
}

// sockDiagTimeout bounds one lookup; the kernel answers in microseconds.
const sockDiagTimeout = 500 * time.Millisecond

func newSockDiag() *sockDiag { return &sockDiag{fd: -1, buf: make([]byte, 8192)} }

// TCP states (include/net/tcp_states.h).
const (
	tcpTimeWait   = 6
	tcpListen     = 10
	tcpNewSynRecv = 12
)

// Sizes of struct nlmsghdr, inet_diag_req_v2 and inet_diag_msg.
const (
	nlmsgHdrLen    = 16
	diagReqLen     = 56
	diagMsgLen     = 72
	inetDiagNoCook = 0xffffffff
)

func (d *sockDiag) open() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(sockDiagTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return err
	}
	d.fd = fd
	return nil
}

func (d *sockDiag) closeLocked() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// lookup finds the socket whose local end is remote and whose peer is
// local: the other end of the connection we accepted, if it is on this
// host.
func (d *sockDiag) lookup(local, remote netip.AddrPort) (owner, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		if err := d.open(); err != nil {
			return owner{}, err
		}
	}
	o, err := d.request(local, remote)
	if err != nil {
		// A timed-out request may answer later: start afresh.
		d.closeLocked()
	}
	return o, err
}

func (d *sockDiag) request(local, remote netip.AddrPort) (owner, error) {
	ra, la := remote.Addr().Unmap(), local.Addr().Unmap()
	family := byte(unix.AF_INET6)
	if ra.Is4() {
		family = unix.AF_INET
		if !la.Is4() {
			return owner{}, errors.New("mixed address families")
		}
	}
	d.seq++
	seq := d.seq
	var req [nlmsgHdrLen + diagReqLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], seq)
	r := req[nlmsgHdrLen:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	// The socket we look for is bound to the peer's address and
	// connected to ours.
	binary.BigEndian.PutUint16(id[0:], remote.Port())
	binary.BigEndian.PutUint16(id[2:], local.Port())
	putAddr(id[4:20], ra)
	putAddr(id[20:36], la)
	ne.PutUint32(id[40:], inetDiagNoCook)
	ne.PutUint32(id[44:], inetDiagNoCook)
	if err := unix.Sendto(d.fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return owner{}, fmt.Errorf("netlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return owner{}, errors.New("netlink: no answer in time")
			}
			return owner{}, fmt.Errorf("netlink receive: %w", err)
		}
		b := d.buf[:n]
		for len(b) >= nlmsgHdrLen {
			l := int(ne.Uint32(b[0:]))
			if l < nlmsgHdrLen || l > len(b) {
				return owner{}, errors.New("netlink: malformed answer")
			}
			typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
			data := b[nlmsgHdrLen:l]
			b = b[min((l+3)&^3, len(b)):]
			if mseq != seq {
				continue // a late answer to an earlier request
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(data) < 4 {
					return owner{}, errors.New("netlink: malformed error")
				}
				errno := -int32(ne.Uint32(data))
				if errno == int32(unix.ENOENT) {
					return owner{}, nil
				}
				return owner{}, fmt.Errorf("sock_diag: %w", unix.Errno(errno))
			case unix.NLMSG_DONE:
				return owner{}, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(data) < diagMsgLen {
					return owner{}, errors.New("sock_diag: short answer")
				}
				state := data[1]
				uid, inode := ne.Uint32(data[64:]), ne.Uint32(data[68:])
				if state == tcpListen || state == tcpNewSynRecv {
					// A listener on the peer's port, not the peer.
					return owner{}, nil
				}
				return owner{found: true, live: inode != 0 && state != tcpTimeWait, uid: uid}, nil
			}
		}
	}
}

func putAddr(dst []byte, a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		copy(dst, b[:])
		return
	}
	b := a.As16()
	copy(dst, b[:])
}

func newOwnerLookup() (ownerLookup, error) {
	d := newSockDiag()
	// Probe once, so that a host (or a sandbox) without sock_diag is
	// found at start rather than by refusing every MTA connection.
	if _, err := d.lookup(netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")); err != nil {
		return nil, err
	}
	return d, nil
}
