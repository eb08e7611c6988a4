package milterconn

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// countConn records each Write as one system call would see it.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.mu.Unlock()
	return len(p), nil
}

func packet(code byte, data string) []byte {
	n := len(data) + 1
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), code}, data...)
}

// writeAsLibrary writes a packet as the milter library does: length and
// code, then the payload.
func writeAsLibrary(t *testing.T, c net.Conn, code byte, data string) {
	t.Helper()
	p := packet(code, data)
	if _, err := c.Write(p[:5]); err != nil {
		t.Fatal(err)
	}
	if data != "" {
		if _, err := c.Write(p[5:]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWritesCoalesce(t *testing.T) {
	type pkt struct {
		code byte
		data string
	}
	tests := []struct {
		name string
		pkts []pkt
		// want is the packets of each write(2), in order.
		want [][]pkt
	}{
		{"a reply alone is one write", []pkt{{'c', ""}}, [][]pkt{{{'c', ""}}}},
		{"a reply code with text is one write", []pkt{{'y', "451 4.7.1 later\x00"}}, [][]pkt{{{'y', "451 4.7.1 later\x00"}}}},
		{"header insertions go out with the final reply",
			[]pkt{{'i', "\x00\x00\x00\x00DKIM-Signature\x00v=1\x00"}, {'h', "X-A\x00b\x00"}, {'a', ""}},
			[][]pkt{{{'i', "\x00\x00\x00\x00DKIM-Signature\x00v=1\x00"}, {'h', "X-A\x00b\x00"}, {'a', ""}}}},
		{"a quarantine is held like the other modifications",
			[]pkt{{'q', "held\x00"}, {'c', ""}}, [][]pkt{{{'q', "held\x00"}, {'c', ""}}}},
		{"progress is sent at once, not held",
			[]pkt{{'h', "X-A\x00b\x00"}, {'p', ""}, {'a', ""}}, [][]pkt{{{'h', "X-A\x00b\x00"}, {'p', ""}}, {{'a', ""}}}},
		{"successive replies are separate writes",
			[]pkt{{'c', ""}, {'c', ""}, {'t', ""}}, [][]pkt{{{'c', ""}}, {{'c', ""}}, {{'t', ""}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			cc := &countConn{Conn: a}
			c := newBufConn(cc)
			defer c.Close()
			for _, p := range tc.pkts {
				writeAsLibrary(t, c, p.code, p.data)
			}
			if len(cc.writes) != len(tc.want) {
				t.Fatalf("%d writes, want %d: %q", len(cc.writes), len(tc.want), cc.writes)
			}
			for i, w := range tc.want {
				var exp []byte
				for _, p := range w {
					exp = append(exp, packet(p.code, p.data)...)
				}
				if !bytes.Equal(cc.writes[i], exp) {
					t.Errorf("write %d = %q, want %q", i, cc.writes[i], exp)
				}
			}
		})
	}
}

func TestHeldBytesAreBounded(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	cc := &countConn{Conn: a}
	c := newBufConn(cc)
	defer c.Close()
	big := string(bytes.Repeat([]byte("x"), 40<<10))
	writeAsLibrary(t, c, 'b', big)
	if len(cc.writes) != 0 {
		t.Fatalf("first body replacement chunk should be held, got %d writes", len(cc.writes))
	}
	writeAsLibrary(t, c, 'b', big)
	if len(cc.writes) != 1 {
		t.Fatalf("beyond %d held bytes the packets must be sent; got %d writes", maxHeld, len(cc.writes))
	}
}

func TestReadsAreBufferedAndDeadlinesApply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bl := Listener(ln)
	defer bl.Close()
	want := string(packet('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff")) + string(packet('H', "mx.example\x00"))
	done := make(chan []byte, 1)
	go func() {
		c, err := bl.Accept()
		if err != nil {
			done <- nil
			return
		}
		defer c.Close()
		var got []byte
		buf := make([]byte, 3)
		for len(got) < len(want) {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			got = append(got, buf[:n]...)
		}
		// With nothing more to read, the deadline ends the read.
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(buf); err == nil {
			got = append(got, []byte("NO DEADLINE")...)
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			got = append(got, []byte("WRONG ERROR "+err.Error())...)
		}
		done <- got
	}()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := io.WriteString(cl, want); err != nil {
		t.Fatal(err)
	}
	if got := <-done; string(got) != want {
		t.Fatalf("read %q", got)
	}
}

func TestReadAfterCloseFails(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newBufConn(a)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after close succeeded")
	}
}
