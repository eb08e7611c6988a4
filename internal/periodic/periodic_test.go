package periodic

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a log buffer safe for the loop's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A run of failures is logged once, its end once; Stop waits for the loop
// and may be called twice.
func TestLoopLogsOutagesOnce(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var mu sync.Mutex
	calls := 0
	save := func() error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls >= 2 && calls <= 5 {
			return errors.New("disk full")
		}
		return nil
	}
	l := Start(time.Millisecond, save, log, Messages{Failed: "save failed", Recovered: "save works again", Attrs: []any{"file", "x"}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.Stop()
	l.Stop()
	out := buf.String()
	if got := strings.Count(out, "save failed"); got != 1 {
		t.Errorf("failure logged %d times, want 1:\n%s", got, out)
	}
	if got := strings.Count(out, "save works again"); got != 1 {
		t.Errorf("recovery logged %d times, want 1:\n%s", got, out)
	}
	if !strings.Contains(out, "err=\"disk full\"") || !strings.Contains(out, "file=x") {
		t.Errorf("log lines lack the error or the attributes:\n%s", out)
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls != n {
		t.Errorf("save ran after Stop")
	}
	var nilLoop *Loop
	nilLoop.Stop()
}
