package loadgen

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
)

// RawNopMilter is a second do-nothing milter that shares nothing with the
// gateway: no milter library and no buffered transport. It speaks the
// milter protocol directly on the connection the way a minimal C or Go
// milter does (each packet read as its 4-byte length, then its body; each
// reply one write), asks for no reply at every stage but end of message,
// and accepts there. It is the cheapest a milter can be, so the gateway's
// figures are not flattered by an anchor that uses the gateway's own
// transport (ListenNop).
type RawNopMilter struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{}
}

// Milter protocol (libmilter's mfdef.h, protocol version 6).
const (
	rawOptneg  = 'O'
	rawMacro   = 'D'
	rawEOM     = 'E'
	rawAbort   = 'A'
	rawQuit    = 'Q'
	rawQuitNC  = 'K'
	rawAccept  = 'a'
	rawCont    = 'c'
	rawVersion = 6

	// The stages it asks no reply for, and those it asks not to get.
	rawNRConn = 0x1000
	rawNRHelo = 0x2000
	rawNRMail = 0x4000
	rawNRRcpt = 0x8000
	rawNRData = 0x10000
	rawNRUnkn = 0x20000
	rawNREOH  = 0x40000
	rawNRBody = 0x80000
	rawNRHdr  = 0x80
	rawNoUnkn = 0x100
	rawNoData = 0x200
	rawWanted = rawNRConn | rawNRHelo | rawNRMail | rawNRRcpt | rawNRData | rawNRUnkn | rawNREOH | rawNRBody | rawNRHdr | rawNoUnkn | rawNoData
)

// noReply maps a stage command to the flag that makes it reply-less.
var rawNoReply = map[byte]uint32{'C': rawNRConn, 'H': rawNRHelo, 'M': rawNRMail, 'R': rawNRRcpt, 'T': rawNRData, 'U': rawNRUnkn, 'N': rawNREOH, 'B': rawNRBody, 'L': rawNRHdr}

// ListenRawNop starts the raw do-nothing milter on network/address.
func ListenRawNop(network, address string) (*RawNopMilter, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	m := &RawNopMilter{ln: ln, conn: map[net.Conn]struct{}{}}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Addr is the listener's address.
func (m *RawNopMilter) Addr() net.Addr { return m.ln.Addr() }

// Close stops the milter and its connections.
func (m *RawNopMilter) Close() error {
	err := m.ln.Close()
	m.mu.Lock()
	for c := range m.conn {
		_ = c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return err
}

func (m *RawNopMilter) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		m.conn[c] = struct{}{}
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = rawSession(c)
			_ = c.Close()
			m.mu.Lock()
			delete(m.conn, c)
			m.mu.Unlock()
		}()
	}
}

// maxRawPacket bounds one packet (the MTA sends body chunks of 64 KiB).
const maxRawPacket = 1 << 20

// rawSession serves one MTA connection until it quits or fails.
func rawSession(c net.Conn) error {
	var hdr [4]byte
	var buf []byte
	var nr uint32
	reply := func(cmd byte, data []byte) error {
		p := make([]byte, 5+len(data))
		binary.BigEndian.PutUint32(p, uint32(1+len(data)))
		p[4] = cmd
		copy(p[5:], data)
		_, err := c.Write(p)
		return err
	}
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < 1 || n > maxRawPacket {
			return errors.New("raw nop milter: bad packet length")
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		cmd, data := buf[0], buf[1:]
		switch cmd {
		case rawOptneg:
			if len(data) < 12 {
				return errors.New("raw nop milter: short option negotiation")
			}
			offered := binary.BigEndian.Uint32(data[8:12])
			nr = offered & rawWanted
			var out [12]byte
			binary.BigEndian.PutUint32(out[0:], rawVersion)
			binary.BigEndian.PutUint32(out[4:], 0) // no modifications
			binary.BigEndian.PutUint32(out[8:], nr)
			if err := reply(rawOptneg, out[:]); err != nil {
				return err
			}
		case rawMacro, rawAbort, rawQuitNC:
		case rawQuit:
			return nil
		case rawEOM:
			if err := reply(rawAccept, nil); err != nil {
				return err
			}
		default:
			if f, ok := rawNoReply[cmd]; ok && nr&f != 0 {
				continue
			}
			if err := reply(rawCont, nil); err != nil {
				return err
			}
		}
	}
}
