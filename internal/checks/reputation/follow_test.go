package reputation

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines collects what a follower delivers.
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	l.got = append(l.got, s)
	l.mu.Unlock()
}

// wait waits until the lines received end with want.
func (l *lines) wait(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got := append([]string(nil), l.got...)
		l.mu.Unlock()
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines: got %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func startFollow(t *testing.T, path string, fromStart bool) *lines {
	l := &lines{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, fromStart, 5*time.Millisecond, l.add) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow: %v", err)
		}
	})
	return l
}

func TestFollow(t *testing.T) {
	t.Run("starts at the end, then reads appended lines, a partial line when completed", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "maillog")
		appendTo(t, p, "old 1\nold 2\n")
		l := startFollow(t, p, false)
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, "new 1\nnew ")
		l.wait(t, "new 1")
		appendTo(t, p, "2\n")
		l.wait(t, "new 1", "new 2")
	})
	t.Run("from_start reads what is there", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "maillog")
		appendTo(t, p, "old 1\nold 2\n")
		l := startFollow(t, p, true)
		l.wait(t, "old 1", "old 2")
	})
	t.Run("rename rotation: the rest of the old file, then the new one from its start", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "maillog")
		appendTo(t, p, "")
		l := startFollow(t, p, false)
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, "a\n")
		l.wait(t, "a")
		// The writer still holds the old file while it is renamed.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(f, "b\n")
		f.Close()
		appendTo(t, p, "c\n")
		l.wait(t, "a", "b", "c")
		appendTo(t, p, "d\n")
		l.wait(t, "a", "b", "c", "d")
	})
	t.Run("copytruncate: starts again at the beginning", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "maillog")
		appendTo(t, p, "")
		l := startFollow(t, p, false)
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, "first line, rather long\n")
		l.wait(t, "first line, rather long")
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, "x\n")
		l.wait(t, "first line, rather long", "x")
	})
	t.Run("a file that does not exist yet is waited for and read from its start", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "maillog")
		l := startFollow(t, p, false)
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, "born\n")
		l.wait(t, "born")
	})
	t.Run("an overlong line is skipped whole", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "maillog")
		appendTo(t, p, "")
		l := startFollow(t, p, false)
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, strings.Repeat("x", 3*maxLine)+"\nshort\n")
		l.wait(t, "short")
	})
}

func TestReadLines(t *testing.T) {
	l := &lines{}
	in := "a\r\n" + strings.Repeat("y", 200<<10) + "\nb\nlast"
	if err := ReadLines(context.Background(), strings.NewReader(in), l.add); err != nil {
		t.Fatal(err)
	}
	l.wait(t, "a\r", "b", "last")
}
