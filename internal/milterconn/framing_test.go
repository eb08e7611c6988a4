package milterconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// optneg is an MTA's option negotiation: version 6, all actions, all
// protocol flags.
var optneg = packet('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff")

func cat(ps ...[]byte) []byte { return bytes.Join(ps, nil) }

func TestPacketChecks(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		// ok is the number of packets handed out before the stream ends
		// (io.EOF) or a violation is found.
		ok        int
		violation bool
	}{
		{"a well-formed transaction", cat(optneg,
			packet('D', "Cj\x00mx.example\x00"),
			packet('C', "client.example\x004\x00\x19192.0.2.1\x00"),
			packet('H', "client.example\x00"),
			packet('M', "<a@example.com>\x00SIZE=10\x00"),
			packet('R', "<b@example.net>\x00"),
			packet('T', ""),
			packet('L', "Subject\x00 hi\x00"),
			packet('N', ""),
			packet('B', "body\r\n"),
			packet('E', ""),
			packet('A', ""),
			packet('Q', "")), 13, false},
		{"unknown family connect", cat(optneg, packet('C', "h\x00U")), 2, false},
		{"unix socket connect", cat(optneg, packet('C', "localhost\x00L\x00\x00/tmp/s\x00")), 2, false},
		{"empty macro set", cat(optneg, packet('D', "C")), 2, false},
		{"unknown SMTP command", cat(optneg, packet('U', "VRFY x\x00")), 2, false},

		// The five inputs that made go-milter v0.10.2 panic.
		{"length 0 before negotiation", []byte{0, 0, 0, 0}, 0, true},
		{"length 0 after negotiation", cat(optneg, []byte{0, 0, 0, 0}), 1, true},
		{"connect without NUL", cat(optneg, packet('C', "client.example")), 1, true},
		{"MAIL without NUL", cat(optneg, packet('M', "<a@example.com>")), 1, true},
		{"RCPT without NUL", cat(optneg, packet('R', "<b@example.net>")), 1, true},

		{"connect without family", cat(optneg, packet('C', "client.example\x00")), 1, true},
		{"connect without port", cat(optneg, packet('C', "h\x004\x00")), 1, true},
		{"connect address without NUL", cat(optneg, packet('C', "h\x004\x00\x19192.0.2.1")), 1, true},
		{"connect unknown family", cat(optneg, packet('C', "h\x00X")), 1, true},
		{"empty MAIL", cat(optneg, packet('M', "")), 1, true},
		{"MAIL args without NUL", cat(optneg, packet('M', "<a@b>\x00SIZE=1")), 1, true},
		{"HELO without NUL", cat(optneg, packet('H', "x")), 1, true},
		{"header without value", cat(optneg, packet('L', "Subject\x00")), 1, true},
		{"empty macro packet", cat(optneg, packet('D', "")), 1, true},
		{"macro without NUL", cat(optneg, packet('D', "Cj")), 1, true},
		{"unknown command byte", cat(optneg, packet('Z', "")), 1, true},
		{"negotiation repeated", cat(optneg, optneg), 1, true},
		{"first packet not negotiation", packet('C', "h\x00U"), 0, true},
		{"short negotiation", packet('O', "\x00\x00\x00\x06"), 0, true},
		{"huge length", cat(optneg, []byte{0xff, 0xff, 0xff, 0xff, 'B'}), 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pr packetReader
			r := bytes.NewReader(tc.stream)
			var got int
			var buf []byte
			var err error
			for {
				buf, err = pr.next(r, buf)
				if err != nil {
					break
				}
				got++
			}
			var pe *ProtocolError
			if isViolation := errors.As(err, &pe); isViolation != tc.violation {
				t.Fatalf("err = %v, want violation %v", err, tc.violation)
			}
			if !tc.violation && err != io.EOF {
				t.Fatalf("err = %v, want EOF", err)
			}
			if got != tc.ok {
				t.Errorf("%d packets handed out, want %d", got, tc.ok)
			}
		})
	}
}

func TestTruncatedPacketIsAReadError(t *testing.T) {
	var pr packetReader
	_, err := pr.next(bytes.NewReader(optneg[:8]), nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
}

func TestViolationFailsReadsAndIsReportedOnce(t *testing.T) {
	a, b := net.Pipe()
	var reports int
	c := newBufConn(a)
	c.rejected = func(_ net.Addr, pe *ProtocolError) { reports++ }
	defer c.Close()
	go func() {
		_, _ = b.Write(cat(optneg, []byte{0, 0, 0, 0}))
	}()
	got := make([]byte, len(optneg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, optneg) {
		t.Fatalf("negotiation: %q %v", got, err)
	}
	for range 3 {
		var pe *ProtocolError
		if _, err := c.Read(make([]byte, 4)); !errors.As(err, &pe) {
			t.Fatalf("read after a violation: %v", err)
		}
	}
	if reports != 1 {
		t.Fatalf("violation reported %d times, want 1", reports)
	}
	_ = b.Close()
}
