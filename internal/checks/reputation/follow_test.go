package reputation

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// want checks the lines received so far.
func (l *lines) want(t *testing.T, want ...string) {
	t.Helper()
	if got := l.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines: got %q, want %q", got, want)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// stepClock is a Waiter the test steps: the follower, when it has done
// one round and asks to wait, hands the wait to the test and rests until
// the test lets it go on. Between two steps nothing runs in the follower,
// so a test can change the file "within one poll" and then see exactly
// what one round made of it. Time moves by the waits asked.
type stepClock struct {
	mu   sync.Mutex
	now  time.Time
	asks chan time.Duration
	fire chan time.Time
	done chan struct{}
}

func newStepClock() *stepClock {
	return &stepClock{now: t0, asks: make(chan time.Duration), fire: make(chan time.Time), done: make(chan struct{})}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) After(d time.Duration) <-chan time.Time {
	select {
	case c.asks <- d:
	case <-c.done:
	}
	return c.fire
}

// stepper runs a Follower on a stepClock.
type stepper struct {
	t      *testing.T
	clk    *stepClock
	f      *Follower
	lines  *lines
	log    *bytes.Buffer
	logMu  *sync.Mutex
	cancel context.CancelFunc
	done   chan error
	last   time.Duration
}

// syncBuf is a bytes.Buffer safe for the follower's log and the test.
type syncBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (s syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// startStepper starts f (Clock, Log and Status set here) and waits for the
// end of its first round.
func startStepper(t *testing.T, f *Follower) *stepper {
	t.Helper()
	s := &stepper{t: t, clk: newStepClock(), f: f, lines: &lines{}, log: &bytes.Buffer{}, logMu: &sync.Mutex{}, done: make(chan error, 1)}
	f.Clock = s.clk
	f.Log = slog.New(slog.NewTextHandler(syncBuf{s.logMu, s.log}, nil))
	if f.Status == nil {
		f.Status = &FollowStatus{}
	}
	if f.Poll == 0 {
		f.Poll = 250 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- f.Run(ctx, s.lines.add) }()
	t.Cleanup(func() {
		cancel()
		close(s.clk.done)
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	s.rest()
	return s
}

// rest waits until the follower asks to wait, and returns the wait.
func (s *stepper) rest() time.Duration {
	s.t.Helper()
	select {
	case d := <-s.clk.asks:
		s.last = d
		return d
	case err := <-s.done:
		s.t.Fatalf("Run returned %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatalf("the follower did not come to rest")
	}
	return 0
}

// step lets the follower do one more round (time moves by the wait it
// asked) and returns the next wait it asks.
func (s *stepper) step() time.Duration {
	s.t.Helper()
	s.clk.mu.Lock()
	s.clk.now = s.clk.now.Add(s.last)
	now := s.clk.now
	s.clk.mu.Unlock()
	select {
	case s.clk.fire <- now:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("the follower does not wait")
	}
	return s.rest()
}

func (s *stepper) logText() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// episodes counts the failure and recovery log lines.
func (s *stepper) episodes() (failures, recoveries int) {
	l := s.logText()
	return strings.Count(l, "delivery log unreadable"), strings.Count(l, "delivery log readable again")
}

func (s *stepper) snap() FollowSnapshot { return s.f.Status.Snapshot(s.clk.Now()) }

func logPath(t *testing.T) string { return filepath.Join(t.TempDir(), "maillog") }

func TestFollow(t *testing.T) {
	t.Run("starts at the end, then reads appended lines, a partial line when completed", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "old 1\nold 2\n")
		s := startStepper(t, &Follower{Path: p})
		appendTo(t, p, "new 1\nnew ")
		s.step()
		s.lines.want(t, "new 1")
		appendTo(t, p, "2\n")
		s.step()
		s.lines.want(t, "new 1", "new 2")
		if sn := s.snap(); sn.State != StateFollowing || sn.LagBytes == nil || *sn.LagBytes != 0 || sn.LastLine == nil {
			t.Errorf("status %+v", sn)
		}
	})
	t.Run("from_start reads what is there", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "old 1\nold 2\n")
		s := startStepper(t, &Follower{Path: p, FromStart: true})
		s.lines.want(t, "old 1", "old 2")
	})
	t.Run("what the start file gained before it was opened is read", func(t *testing.T) {
		// The file at start is placed where it ended when the follower
		// looked at it, even if the open comes later (here: after one
		// refused attempt).
		p := logPath(t)
		appendTo(t, p, "old\n")
		var calls atomic.Int32
		s := startStepper(t, &Follower{Path: p, Open: func(path string) (*os.File, error) {
			if calls.Add(1) == 1 {
				return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
			}
			return OpenRegular(path)
		}})
		appendTo(t, p, "while refused\n")
		s.step()
		s.lines.want(t, "while refused")
	})
	t.Run("rename rotation: the rest of the old file, then the new one from its start", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "")
		s := startStepper(t, &Follower{Path: p})
		appendTo(t, p, "a\n")
		s.step()
		s.lines.want(t, "a")
		// The writer still holds the old file while it is renamed, and
		// writes to it and to the new one within one poll.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(f, "b\n")
		appendTo(t, p, "c\n")
		fmt.Fprint(f, "b2 without newline")
		f.Close()
		s.step()
		s.lines.want(t, "a", "b", "b2 without newline", "c")
		appendTo(t, p, "d\n")
		s.step()
		s.lines.want(t, "a", "b", "b2 without newline", "c", "d")
		if sn := s.snap(); sn.Rotations[RotationRename] != 1 || sn.Rotations[RotationTruncate] != 0 {
			t.Errorf("rotations %v", sn.Rotations)
		}
	})
	t.Run("renamed away and not yet recreated: the old file is read, no failure", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "")
		s := startStepper(t, &Follower{Path: p})
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
		appendTo(t, p+".1", "late\n")
		if d := s.step(); d != s.f.Poll {
			t.Errorf("wait %v, want the poll", d)
		}
		s.lines.want(t, "late")
		if f, _ := s.episodes(); f != 0 {
			t.Errorf("a rotation gap logged as a failure:\n%s", s.logText())
		}
	})
	t.Run("copytruncate, shorter: starts again at the beginning", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "")
		s := startStepper(t, &Follower{Path: p})
		appendTo(t, p, "first line, rather long\n")
		s.step()
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		appendTo(t, p, "x\n")
		s.step()
		s.lines.want(t, "first line, rather long", "x")
	})
	t.Run("copytruncate, regrown past the old offset within one poll: every new line is read", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "")
		s := startStepper(t, &Follower{Path: p})
		var before, after []string
		for i := range 30 {
			before = append(before, fmt.Sprintf("Dec  7 23:%02d:00 mta1 postfix/smtp[1]: OLD%05d: to=<a@b.example>, status=sent", i, i))
		}
		appendTo(t, p, strings.Join(before, "\n")+"\n")
		s.step()
		s.lines.want(t, before...)
		// Truncated and written again, longer than it was, before the
		// follower looks: the size alone says nothing happened.
		if err := os.Truncate(p, 0); err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			after = append(after, fmt.Sprintf("Dec  8 00:%02d:00 mta1 postfix/smtp[2]: NEW%05d: to=<someone-else@b.example>, status=bounced", i, i))
		}
		appendTo(t, p, strings.Join(after, "\n")+"\n")
		s.step()
		s.lines.want(t, append(before, after...)...)
		if sn := s.snap(); sn.Rotations[RotationTruncate] != 1 {
			t.Errorf("rotations %v", sn.Rotations)
		}
		appendTo(t, p, "more\n")
		s.step()
		if got := s.lines.all(); got[len(got)-1] != "more" || len(got) != 61 {
			t.Errorf("after the truncation: %d lines, last %q", len(got), got[len(got)-1])
		}
	})
	t.Run("a file that does not exist yet is waited for and read from its start", func(t *testing.T) {
		p := logPath(t)
		s := startStepper(t, &Follower{Path: p})
		if sn := s.snap(); sn.State != StateRetrying || sn.ErrorKind != ErrKindNotExist {
			t.Errorf("status %+v", sn)
		}
		appendTo(t, p, "born\n")
		s.step()
		s.lines.want(t, "born")
		if f, r := s.episodes(); f != 1 || r != 1 {
			t.Errorf("episodes %d/%d:\n%s", f, r, s.logText())
		}
	})
	t.Run("an overlong line is skipped whole", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "")
		s := startStepper(t, &Follower{Path: p})
		appendTo(t, p, strings.Repeat("x", 3*maxLine)+"\nshort\n")
		s.step()
		s.lines.want(t, "short")
	})
}

// backoffs are the waits of a failure that lasts, from 100 ms doubling to
// the 30 s cap.
var backoffs = []time.Duration{
	100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
	1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond,
	25600 * time.Millisecond, 30 * time.Second, 30 * time.Second, 30 * time.Second,
}

// TestFollowRecovers: whatever keeps the follower from reading, it waits
// with capped back-off (no spinning: one attempt per wait), logs the
// failure once and its end once, shows it in its status, and reads again
// when a regular file is back.
func TestFollowRecovers(t *testing.T) {
	cases := []struct {
		name string
		kind string
		// spoil makes p unreadable for the follower (which holds no file).
		spoil func(t *testing.T, p string)
		// restore puts a regular file back at p.
		restore func(t *testing.T, p string)
	}{
		{"a directory at the path", ErrKindNotRegular,
			func(t *testing.T, p string) { mustDo(t, os.Mkdir(p, 0o755)) },
			func(t *testing.T, p string) { mustDo(t, os.Remove(p)) }},
		{"a symlink loop", ErrKindLoop,
			func(t *testing.T, p string) { mustDo(t, os.Symlink(filepath.Base(p), p)) },
			func(t *testing.T, p string) { mustDo(t, os.Remove(p)) }},
		{"a symlink to /dev/zero", ErrKindNotRegular,
			func(t *testing.T, p string) { mustDo(t, os.Symlink("/dev/zero", p)) },
			func(t *testing.T, p string) { mustDo(t, os.Remove(p)) }},
		{"a FIFO (no writer: an open would block)", ErrKindNotRegular,
			func(t *testing.T, p string) { mustDo(t, syscall.Mkfifo(p, 0o644)) },
			func(t *testing.T, p string) { mustDo(t, os.Remove(p)) }},
		{"a unix socket", ErrKindNotRegular,
			func(t *testing.T, p string) {
				l, err := net.Listen("unix", p)
				mustDo(t, err)
				t.Cleanup(func() { l.Close() })
			},
			func(t *testing.T, p string) { mustDo(t, os.Remove(p)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "maillog")
			c.spoil(t, p)
			var opens atomic.Int32
			s := startStepper(t, &Follower{Path: p, Open: func(path string) (*os.File, error) {
				opens.Add(1)
				return OpenRegular(path)
			}})
			waits := []time.Duration{s.last}
			for len(waits) < len(backoffs) {
				waits = append(waits, s.step())
			}
			if fmt.Sprint(waits) != fmt.Sprint(backoffs) {
				t.Errorf("waits %v, want %v", waits, backoffs)
			}
			if n := int(opens.Load()); n != len(backoffs) {
				t.Errorf("%d attempts in %d waits", n, len(backoffs))
			}
			sn := s.snap()
			if sn.State != StateRetrying || sn.ErrorKind != c.kind || sn.Errors[c.kind] != int64(len(backoffs)) || sn.Degraded(time.Hour) == "" {
				t.Errorf("status %+v", sn)
			}
			if f, r := s.episodes(); f != 1 || r != 0 {
				t.Errorf("episodes %d/%d:\n%s", f, r, s.logText())
			}
			c.restore(t, p)
			appendTo(t, p, "back 1\nback 2\n")
			if d := s.step(); d != s.f.Poll {
				t.Errorf("wait after recovery %v, want the poll", d)
			}
			s.lines.want(t, "back 1", "back 2")
			sn = s.snap()
			if sn.State != StateFollowing || sn.Recoveries != 1 || sn.Error != "" || sn.Degraded(time.Hour) != "" {
				t.Errorf("status after recovery %+v", sn)
			}
			if f, r := s.episodes(); f != 1 || r != 1 {
				t.Errorf("episodes %d/%d:\n%s", f, r, s.logText())
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFollowWhileRotating: the path goes bad while the follower holds a
// file: what is written to the held file is still read, the failure is
// logged once, and the follower goes on with whatever regular file comes
// back: the same file where it was, another from its start.
func TestFollowWhileRotating(t *testing.T) {
	t.Run("EACCES on the new file for a while after rotation", func(t *testing.T) {
		p := logPath(t)
		appendTo(t, p, "")
		var refuse atomic.Int32
		s := startStepper(t, &Follower{Path: p, Open: func(path string) (*os.File, error) {
			if refuse.Load() > 0 {
				refuse.Add(-1)
				return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
			}
			return OpenRegular(path)
		}})
		appendTo(t, p, "a\n")
		s.step()
		mustDo(t, os.Rename(p, p+".1"))
		appendTo(t, p, "new 1\n")
		appendTo(t, p+".1", "old late\n")
		refuse.Store(3)
		var waits []time.Duration
		for range 3 {
			waits = append(waits, s.step())
		}
		if fmt.Sprint(waits) != fmt.Sprint(backoffs[:3]) {
			t.Errorf("waits %v", waits)
		}
		s.lines.want(t, "a", "old late")
		sn := s.snap()
		if sn.State != StateRetrying || sn.ErrorKind != ErrKindPermission || sn.LagBytes == nil || *sn.LagBytes != int64(len("new 1\n")) {
			t.Errorf("status %+v", sn)
		}
		appendTo(t, p, "new 2\n")
		s.step()
		s.lines.want(t, "a", "old late", "new 1", "new 2")
		if f, r := s.episodes(); f != 1 || r != 1 || s.snap().Errors[ErrKindPermission] != 3 {
			t.Errorf("episodes %d/%d, errors %v:\n%s", f, r, s.snap().Errors, s.logText())
		}
	})
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, p string)
	}{
		{"the path briefly a directory", func(t *testing.T, p string) { mustDo(t, os.Mkdir(p, 0o755)) }},
		{"the path briefly /dev/zero", func(t *testing.T, p string) { mustDo(t, os.Symlink("/dev/zero", p)) }},
		{"the path briefly a symlink loop", func(t *testing.T, p string) { mustDo(t, os.Symlink(filepath.Base(p), p)) }},
	} {
		t.Run(c.name+", then the same file back", func(t *testing.T) {
			p := logPath(t)
			appendTo(t, p, "")
			s := startStepper(t, &Follower{Path: p})
			appendTo(t, p, "a\n")
			s.step()
			mustDo(t, os.Rename(p, p+".away"))
			c.spoil(t, p)
			appendTo(t, p+".away", "b\n")
			if d := s.step(); d != backoffs[0] {
				t.Errorf("wait %v, want back-off", d)
			}
			s.step()
			s.lines.want(t, "a", "b")
			mustDo(t, os.Remove(p))
			mustDo(t, os.Rename(p+".away", p))
			appendTo(t, p, "c\n")
			s.step()
			s.lines.want(t, "a", "b", "c")
			if f, r := s.episodes(); f != 1 || r != 1 {
				t.Errorf("episodes %d/%d:\n%s", f, r, s.logText())
			}
		})
		t.Run(c.name+", then a new file", func(t *testing.T) {
			p := logPath(t)
			appendTo(t, p, "")
			s := startStepper(t, &Follower{Path: p})
			mustDo(t, os.Rename(p, p+".1"))
			c.spoil(t, p)
			s.step()
			mustDo(t, os.Remove(p))
			appendTo(t, p, "fresh 1\nfresh 2\n")
			s.step()
			s.lines.want(t, "fresh 1", "fresh 2")
		})
	}
}

// TestFollowLag: the status says how much is left to read and since when
// the follower has not been up to date.
func TestFollowLag(t *testing.T) {
	p := logPath(t)
	appendTo(t, p, "")
	var refuse atomic.Bool
	s := startStepper(t, &Follower{Path: p, Open: func(path string) (*os.File, error) {
		if refuse.Load() {
			return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
		}
		return OpenRegular(path)
	}})
	appendTo(t, p, "a\n")
	s.step()
	sn := s.snap()
	if sn.LastLine == nil || !sn.LastLine.Equal(s.clk.Now()) || sn.LagSeconds != 0 || *sn.LagBytes != 0 {
		t.Fatalf("up to date: %+v", sn)
	}
	mustDo(t, os.Rename(p, p+".1"))
	appendTo(t, p, "0123456789\n")
	refuse.Store(true)
	for range 5 {
		s.step()
	}
	sn = s.snap()
	if *sn.LagBytes != 11 || sn.LagSeconds < 1.5 || sn.Degraded(time.Second) == "" {
		t.Fatalf("behind: %+v", sn)
	}
	refuse.Store(false)
	s.step()
	if sn = s.snap(); *sn.LagBytes != 0 || sn.LagSeconds != 0 || sn.Degraded(time.Second) != "" {
		t.Fatalf("caught up: %+v", sn)
	}
}

// TestOpenCheckedFIFO: a FIFO that takes the log's place between the look
// and the open (no writer: a blocking open would hang) is opened without
// blocking and refused through its descriptor.
func TestOpenCheckedFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "maillog")
	mustDo(t, syscall.Mkfifo(p, 0o644))
	done := make(chan error, 1)
	go func() {
		f, err := openChecked(p)
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if errorKind(err) != ErrKindNotRegular {
			t.Fatalf("err %v, want not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the open blocked on a FIFO")
	}
}
