package milter

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// aupguard patch (PATCHES.md): connections are served by goroutines that
// wait for the next connection. Sequential sessions are all served, no
// more goroutines than the concurrency needs stay behind, and Close ends
// the waiting ones.
func TestConnectionGoroutinesReused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(WithMilter(func() Milter { return NoOpMilter{} }))
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	before := runtime.NumGoroutine()
	c := NewClient("tcp", ln.Addr().String())
	for i := 0; i < 50; i++ {
		sess, err := c.Session(nil)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if act, err := sess.Conn("client.example", FamilyInet, 25, "192.0.2.1"); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: connect: %v %v", i, act, err)
		}
		if act, err := sess.Helo("client.example"); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: helo: %v %v", i, act, err)
		}
		if act, err := sess.Mail("<a@example.com>", ""); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: mail: %v %v", i, act, err)
		}
		if act, err := sess.Rcpt("<b@example.net>", ""); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: rcpt: %v %v", i, act, err)
		}
		if act, err := sess.DataStart(); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: data: %v %v", i, act, err)
		}
		if act, err := sess.HeaderEnd(); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: eoh: %v %v", i, act, err)
		}
		if act, err := sess.BodyChunk([]byte("hello\r\n")); err != nil || act.Type != ActionContinue {
			t.Fatalf("session %d: body: %v %v", i, act, err)
		}
		if _, act, err := sess.End(); err != nil || act.Type != ActionAccept {
			t.Fatalf("session %d: end: %v %v", i, act, err)
		}
		if err := sess.Close(); err != nil {
			t.Fatalf("session %d: close: %v", i, err)
		}
	}
	// 50 sequential sessions left at most a few waiting goroutines (one per
	// connection still closing when the next came), not 50.
	time.Sleep(100 * time.Millisecond)
	switch n := runtime.NumGoroutine() - before; {
	case n > 3:
		t.Errorf("%d goroutines more than before 50 sequential sessions", n)
	case n < 1:
		t.Errorf("no goroutine waits for the next connection")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before-1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before-1 {
		t.Errorf("after Close %d goroutines, want at most %d (the waiting connection goroutines end)", n, before-1)
	}
}
