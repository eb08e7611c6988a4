// Package milterconn is the transport under the milter library: MTA
// connections with buffered reads and coalesced writes.
package milterconn

import (
	"bufio"
	"encoding/binary"
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

// Listener wraps ln so that its connections read through a buffer
// and coalesce the packets they write (see above).
func Listener(ln net.Listener) net.Listener { return bufListener{ln} }

type bufListener struct{ net.Listener }

func (l bufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newBufConn(c), nil
}

var readBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// bufConn is one MTA connection with buffered reads and coalesced writes.
type bufConn struct {
	net.Conn
	rmu sync.Mutex
	r   *bufio.Reader // nil once closed

	wmu  sync.Mutex
	w    []byte // written by the library, not yet sent
	scan int    // w[:scan] is whole packets that may be held
}

func newBufConn(c net.Conn) *bufConn {
	r := readBufs.Get().(*bufio.Reader)
	r.Reset(c)
	return &bufConn{Conn: c, r: r}
}

// Read reads from the buffer, refilling it from the socket (deadlines set
// on the connection apply to the refill).
func (c *bufConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.r == nil {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
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
	}
	c.rmu.Unlock()
	return err
}
