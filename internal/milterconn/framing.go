package milterconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The read side checks the framing and the arguments of every packet the
// MTA sends before the milter library sees it. The library (d--j/go-milter
// v0.10.2) indexes into packets without checking their length: a packet of
// length 0, or a connect, MAIL or RCPT packet whose string lacks its NUL
// terminator, makes it panic in its own connection goroutine, where no
// recover of ours can reach, and that ends the process. A packet that fails
// these checks ends its connection only: the MTA applies its default action
// (Postfix: milter_default_action) to that one session.
//
// The rules are those of the milter protocol as the MTAs speak it (libmilter
// mfdef.h, Postfix milter8.c): every packet is a 4-byte big-endian length
// that counts a command byte and its payload; strings are NUL-terminated.

// MaxPacket bounds the length of one packet from the MTA. Postfix sends at
// most 64 KiB of body per packet (MILTER_CHUNK_SIZE) and a header up to its
// header_size_limit (100 KiB by default); 16 MiB leaves room for any sane
// setting while a hostile peer cannot make the gateway reserve the 512 MiB
// the library would accept. Memory grows only as the bytes arrive.
const MaxPacket = 16 << 20

// ProtocolError is a packet from the MTA that breaks the milter protocol.
// The connection that sent it is closed.
type ProtocolError struct {
	Code   byte // the command byte (0 when the packet had none)
	Reason string
}

func (e *ProtocolError) Error() string {
	if e.Code == 0 {
		return "milter protocol violation: " + e.Reason
	}
	return fmt.Sprintf("milter protocol violation: command %q: %s", e.Code, e.Reason)
}

// packetReader reads whole packets from r and checks them.
type packetReader struct {
	negotiated bool
	hdr        [4]byte
}

// next reads one packet (length prefix included) from r, appending it to
// buf[:0], and checks it. A read error is returned as it is (the library
// recognises io.EOF and timeouts); a protocol violation as *ProtocolError.
func (pr *packetReader) next(r io.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, pr.hdr[:]); err != nil {
		return buf[:0], err
	}
	n := binary.BigEndian.Uint32(pr.hdr[:])
	if n == 0 {
		return buf[:0], &ProtocolError{Reason: "packet of length 0 has no command byte"}
	}
	if n > MaxPacket {
		return buf[:0], &ProtocolError{Reason: fmt.Sprintf("packet of %d bytes exceeds the limit of %d", n, MaxPacket)}
	}
	buf = append(buf[:0], pr.hdr[:]...)
	// Grow with what arrives, not with what the peer claims.
	for remain := int(n); remain > 0; {
		step := min(remain, 64<<10)
		start := len(buf)
		buf = append(buf, make([]byte, step)...)
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf[:0], err
		}
		remain -= step
	}
	if err := pr.check(buf[4], buf[5:]); err != nil {
		return buf[:0], err
	}
	return buf, nil
}

// check validates one command and its payload.
func (pr *packetReader) check(code byte, data []byte) error {
	bad := func(format string, args ...any) error {
		return &ProtocolError{Code: code, Reason: fmt.Sprintf(format, args...)}
	}
	if !pr.negotiated {
		// SMFIC_OPTNEG: version, actions, protocol flags (3 x 32 bits).
		if code != 'O' {
			return bad("the first packet must be option negotiation")
		}
		if len(data) < 12 {
			return bad("option negotiation of %d bytes, want 12", len(data))
		}
		pr.negotiated = true
		return nil
	}
	switch code {
	case 'O':
		return bad("option negotiation repeated")
	case 'C': // SMFIC_CONNECT: hostname NUL, family, [port, address NUL]
		_, rest, ok := cstring(data)
		if !ok {
			return bad("hostname without NUL terminator")
		}
		if len(rest) == 0 {
			return bad("no protocol family")
		}
		family, rest := rest[0], rest[1:]
		switch family {
		case 'U': // unknown: nothing follows
		case 'L', '4', '6':
			if len(rest) < 2 {
				return bad("no port")
			}
			if _, _, ok := cstring(rest[2:]); !ok {
				return bad("address without NUL terminator")
			}
		default:
			return bad("unknown protocol family %q", family)
		}
	case 'H': // SMFIC_HELO: name NUL
		if _, _, ok := cstring(data); !ok {
			return bad("HELO name without NUL terminator")
		}
	case 'M', 'R': // SMFIC_MAIL, SMFIC_RCPT: address NUL, then ESMTP args NUL each
		if len(data) == 0 || data[len(data)-1] != 0 {
			return bad("argument without NUL terminator")
		}
	case 'L': // SMFIC_HEADER: name NUL value NUL
		if len(data) < 2 || data[len(data)-1] != 0 || bytes.Count(data, []byte{0}) != 2 {
			return bad("header is not name NUL value NUL")
		}
	case 'D': // SMFIC_MACRO: command byte, then name NUL value NUL pairs
		if len(data) == 0 {
			return bad("macro packet without command byte")
		}
		if len(data) > 1 && data[len(data)-1] != 0 {
			return bad("macro without NUL terminator")
		}
	case 'U': // SMFIC_UNKNOWN: command NUL
		if _, _, ok := cstring(data); !ok {
			return bad("unknown command without NUL terminator")
		}
	case 'B', 'E', 'N', 'T', 'A', 'Q', 'K':
		// Body chunk (any bytes), end of body (may carry a last chunk),
		// end of headers, DATA, abort, quit, quit-new-connection: the
		// library reads no argument from the others.
	default:
		return bad("unknown command")
	}
	return nil
}

// cstring splits data at its first NUL: the string, what follows, and
// whether there was a NUL.
func cstring(data []byte) (s, rest []byte, ok bool) {
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return nil, nil, false
	}
	return data[:i], data[i+1:], true
}
