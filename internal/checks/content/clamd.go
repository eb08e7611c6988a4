package content

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// clamd's INSTREAM protocol, as documented in clamd(8): the command
// "zINSTREAM\0", then the data as chunks, each prefixed with its length as
// a 4-byte unsigned big-endian integer, then a zero-length chunk; clamd
// answers one NUL-terminated line: "stream: OK", "stream: NAME FOUND", or
// "INSTREAM size limit exceeded. ERROR" (StreamMaxLength) and other
// "... ERROR" lines.

// clamdMaxReply bounds the reply line read from clamd.
const clamdMaxReply = 4096

// errStreamLimit is clamd's refusal of a stream over its StreamMaxLength.
var errStreamLimit = errors.New("clamd: INSTREAM size limit exceeded")

// clamdVerdict is clamd's answer for one stream.
type clamdVerdict struct {
	// Found is the signature name, "" when clean.
	Found string
}

// clamdStream is one INSTREAM session on its own connection.
type clamdStream struct {
	conn    net.Conn
	timeout time.Duration
	hdr     [4]byte
}

// dialClamd opens a connection to addr ("unix:/path", "tcp:host:port")
// and starts an INSTREAM session; every later write and the reply are
// bounded by timeout each.
func dialClamd(ctx context.Context, addr string, timeout time.Duration) (*clamdStream, error) {
	network, a := clamdNetwork(addr)
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, network, a)
	if err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	s := &clamdStream{conn: c, timeout: timeout}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("zINSTREAM\x00")); err != nil {
		c.Close()
		return nil, fmt.Errorf("clamd: INSTREAM: %w", err)
	}
	return s, nil
}

// clamdNetwork splits a configured address into the network and address
// net.Dial takes.
func clamdNetwork(addr string) (string, string) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", p
	}
	if p, ok := strings.CutPrefix(addr, "tcp:"); ok {
		return "tcp", p
	}
	return "unix", addr
}

// Write sends p as one chunk (a zero-length p sends nothing: that would
// end the stream).
func (s *clamdStream) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	binary.BigEndian.PutUint32(s.hdr[:], uint32(len(p)))
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.conn.Write(s.hdr[:]); err != nil {
		return 0, s.writeErr(err)
	}
	n, err := s.conn.Write(p)
	if err != nil {
		return n, s.writeErr(err)
	}
	return n, nil
}

// writeErr names a write failure. clamd closes the connection when a
// stream exceeds StreamMaxLength, after sending its reply: a failed write
// reads that reply, if any, so that the limit is told apart from an outage.
func (s *clamdStream) writeErr(err error) error {
	if _, rerr := s.reply(); errors.Is(rerr, errStreamLimit) {
		return errStreamLimit
	}
	return fmt.Errorf("clamd: sending: %w", err)
}

// End sends the zero-length chunk that ends the stream; reply reads the
// verdict.
func (s *clamdStream) End() error {
	var zero [4]byte
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.conn.Write(zero[:]); err != nil {
		return s.writeErr(err)
	}
	return nil
}

// reply reads and interprets clamd's answer.
func (s *clamdStream) reply() (clamdVerdict, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(s.timeout))
	r := bufio.NewReaderSize(s.conn, 256)
	var line []byte
	for len(line) < clamdMaxReply {
		b, err := r.ReadByte()
		if err != nil {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				break
			}
			return clamdVerdict{}, fmt.Errorf("clamd: reading the reply: %w", err)
		}
		if b == 0 || b == '\n' {
			break
		}
		line = append(line, b)
	}
	return parseClamdReply(string(bytes.TrimSpace(line)))
}

// parseClamdReply interprets one reply line of an INSTREAM session.
func parseClamdReply(line string) (clamdVerdict, error) {
	switch {
	case line == "stream: OK":
		return clamdVerdict{}, nil
	case strings.HasPrefix(line, "stream: ") && strings.HasSuffix(line, " FOUND"):
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "stream: "), " FOUND"))
		if name == "" {
			return clamdVerdict{}, fmt.Errorf("clamd: reply without a signature name: %q", line)
		}
		return clamdVerdict{Found: name}, nil
	case strings.Contains(line, "size limit exceeded"):
		return clamdVerdict{}, errStreamLimit
	case line == "":
		return clamdVerdict{}, errors.New("clamd: empty reply")
	}
	return clamdVerdict{}, fmt.Errorf("clamd: unexpected reply %.200q", line)
}

// Close closes the connection.
func (s *clamdStream) Close() error { return s.conn.Close() }
