// Package milterconn is the transport under the milter library: MTA
// connections with buffered reads and coalesced writes.
package milterconn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"sync"
)

// The milter library reads each packet with two read(2) calls (length, then
// payload) and writes each with two write(2) calls (length and code, then
// payload), straight on the socket. On a busy MTA link that is most of the
// gateway's CPU time. Listener wraps each accepted connection so
// that:
//
//   - reads go through a buffer: the MTA streams the packets it expects no
//     reply to (connect, HELO, headers, body chunks, sent with the no-reply
//     flags of protocol v6), and one read(2) takes several of them;
//   - writes are held until a packet is complete, and modification packets
//     (add/insert/change header, recipients, quarantine; they come only at
//     end of message, before the final reply) are held until the next
//     packet that is not one: the headers and the final reply go out in
//     one write(2).
//
// The bytes on the wire are unchanged; only the number of system calls is.

const (
	readBufferSize = 8 << 10
	// maxHeld bounds what is held back: beyond it, held packets are written
	// at once (a body replacement, which the gateway never sends, could
	// otherwise accumulate).
	maxHeld = 64 << 10
)

// Listener wraps ln so that its connections read through a buffer, check
// every packet they read (framing.go) and coalesce the packets they write
// (see above).
func Listener(ln net.Listener) net.Listener { return NewListener(ln, Options{}) }

// Options tune a Listener.
type Options struct {
	// Rejected, when set, is called once for each connection closed because
	// it broke the milter protocol.
	Rejected func(remote net.Addr, err *ProtocolError)
}

// NewListener is Listener with options.
func NewListener(ln net.Listener, o Options) net.Listener { return bufListener{ln, o} }

type bufListener struct {
	net.Listener
	o Options
}

func (l bufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	bc := newBufConn(c)
	bc.rejected = l.o.Rejected
	return bc, nil
}

var readBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// bufConn is one MTA connection with buffered reads and coalesced writes.
type bufConn struct {
	net.Conn
	rmu      sync.Mutex
	r        *bufio.Reader // nil once closed
	pr       packetReader
	pkt      []byte // the checked packet being read by the library
	off      int    // pkt[:off] has been read
	rerr     error  // sticky protocol error
	rejected func(net.Addr, *ProtocolError)

	wmu  sync.Mutex
	w    []byte // written by the library, not yet sent
	scan int    // w[:scan] is whole packets that may be held
}

func newBufConn(c net.Conn) *bufConn {
	r := readBufs.Get().(*bufio.Reader)
	r.Reset(c)
	return &bufConn{Conn: c, r: r}
}

// Read hands out the bytes of whole, checked packets. When the current one
// is used up it reads the next through the buffer (deadlines set on the
// connection apply to the refill) and checks it; a packet that breaks the
// protocol is never handed out: Read fails from then on, and the library
// closes the connection.
func (c *bufConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.r == nil {
		return 0, net.ErrClosed
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.off == len(c.pkt) {
		pkt, err := c.pr.next(c.r, c.pkt)
		c.pkt, c.off = pkt, 0
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				c.rerr = err
				if c.rejected != nil {
					c.rejected(c.Conn.RemoteAddr(), pe)
				}
			}
			return 0, err
		}
	}
	n := copy(p, c.pkt[c.off:])
	c.off += n
	return n, nil
}

// Write appends p to the pending bytes and sends them unless everything
// pending is whole modification packets or an incomplete packet.
func (c *bufConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w = append(c.w, p...)
	if !c.mustSend() {
		return len(p), nil
	}
	_, err := c.Conn.Write(c.w)
	c.w, c.scan = c.w[:0], 0
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// mustSend scans the complete packets pending: it is true as soon as one
// of them is not a modification, or when too much is held.
func (c *bufConn) mustSend() bool {
	if len(c.w) > maxHeld {
		return true
	}
	for len(c.w)-c.scan >= 5 {
		n := int(binary.BigEndian.Uint32(c.w[c.scan:]))
		if n == 0 || len(c.w)-c.scan-4 < n {
			// A zero length is not a packet the library writes: send it as
			// it is rather than guess. Otherwise wait for the payload.
			return n == 0
		}
		if !isModification(c.w[c.scan+4]) {
			return true
		}
		c.scan += 4 + n
	}
	return false
}

// isModification reports whether code is a message modification action
// (milter protocol v6: SMFIR_ADDRCPT, DELRCPT, ADDRCPT_PAR, REPLBODY,
// ADDHEADER, INSHEADER, CHGHEADER, CHGFROM, QUARANTINE). The MTA acts on
// them only when the final reply of end of message arrives.
func isModification(code byte) bool {
	switch code {
	case '+', '-', '2', 'b', 'h', 'i', 'm', 'e', 'q':
		return true
	}
	return false
}

// Close sends nothing held back (a connection closed before its final
// reply has no use for its modifications), closes the socket and returns
// the read buffer.
func (c *bufConn) Close() error {
	err := c.Conn.Close()
	c.rmu.Lock()
	if c.r != nil {
		c.r.Reset(nil)
		readBufs.Put(c.r)
		c.r = nil
		c.pkt = nil
	}
	c.rmu.Unlock()
	return err
}
