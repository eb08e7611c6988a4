package content

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// fakeClamd serves each connection with serve on a Unix socket.
func fakeClamd(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	dir, err := tempSockDir(t)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return "unix:" + filepath.Join(dir, "s")
}

// tempSockDir is a short temporary directory (a Unix socket path is
// limited to 108 bytes).
func tempSockDir(t *testing.T) (string, error) {
	d, err := os.MkdirTemp("", "fclamd")
	if err == nil {
		t.Cleanup(func() { _ = os.RemoveAll(d) })
	}
	return d, err
}

func TestMalwareHostileOrStuckClamd(t *testing.T) {
	cases := []struct {
		name  string
		serve func(c net.Conn)
	}{
		{"never answers: bounded by the timeout", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }},
		{"endless reply without terminator: bounded read", func(c net.Conn) {
			go func() { _, _ = io.Copy(io.Discard, c) }()
			_, _ = c.Write(bytes.Repeat([]byte("A"), 64<<10))
		}},
		{"closes at once", func(c net.Conn) {}},
		{"answers nonsense", func(c net.Conn) {
			go func() { _, _ = io.Copy(io.Discard, c) }()
			_, _ = c.Write([]byte("stream: 250 OK\r\nMAIL FROM\x00"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeClamd(t, tc.serve)
			m := NewMalware(ClamdConfig{Address: addr, Timeout: 300 * time.Millisecond, MaxConcurrent: 1, StreamMaxLength: 1 << 20}, sysClock, nil)
			start := time.Now()
			f, err := scan(m, plainMsg("hello\r\n"), 4096)
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("took %s, want it bounded by the timeout", took)
			}
			var re policy.ReplyError
			if err == nil || !errors.As(err, &re) || re.Reply().Code() != 451 || len(f) != 0 {
				t.Fatalf("findings %v err %v, want the check's error (451), never a verdict", f, err)
			}
			if len(m.slots) != 0 {
				t.Fatal("slot kept after a failed scan")
			}
		})
	}
}
