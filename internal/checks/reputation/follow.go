package reputation

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Follower back-off and read bounds.
const (
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait between two
	// attempts while the followed path cannot be read: it starts at the
	// minimum and doubles up to the maximum, for as long as it lasts.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// fingerprintLen is how many leading bytes of the followed file
	// identify its content: a file truncated and written again (logrotate
	// copytruncate) has other first bytes (log lines start with a time
	// stamp and a queue id) even when it has grown past the old offset.
	fingerprintLen = 256
	// readChunk is one read; stepBudget the most one step reads before
	// it lets the loop look at ctx again.
	readChunk  = 64 << 10
	stepBudget = 4 << 20
)

// Waiter is the follower's clock: Now stamps what it reads, After paces
// its polls and its back-off. Tests pass one they step by hand.
type Waiter interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemWaiter is the real clock.
type SystemWaiter struct{}

// Now returns time.Now().
func (SystemWaiter) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (SystemWaiter) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ErrNotRegular is the error for a followed path that names something other
// than a regular file (a directory, a device such as /dev/zero, a FIFO, a
// socket): it is never read.
var ErrNotRegular = errors.New("not a regular file")

// OpenRegular opens path for reading only if it is a regular file: it is
// looked at before it is opened (a device is never opened), opened
// non-blocking (a FIFO swapped in between cannot block the open) and looked
// at again through the descriptor.
func OpenRegular(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: path, Err: notRegular(st.Mode())}
	}
	return openChecked(path)
}

// openChecked opens path without blocking (a FIFO swapped in after the
// stat) and keeps it only if the descriptor is a regular file.
func openChecked(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = &fs.PathError{Op: "open", Path: path, Err: notRegular(st.Mode())}
		}
		return nil, err
	}
	return f, nil
}

// notRegular is ErrNotRegular naming what the path is.
func notRegular(m fs.FileMode) error {
	what := "special file"
	switch {
	case m.IsDir():
		what = "directory"
	case m&fs.ModeCharDevice != 0:
		what = "character device"
	case m&fs.ModeDevice != 0:
		what = "block device"
	case m&fs.ModeNamedPipe != 0:
		what = "FIFO"
	case m&fs.ModeSocket != 0:
		what = "socket"
	}
	return fmt.Errorf("%w: a %s", ErrNotRegular, what)
}

// The kinds of follower errors (labels of the errors metric).
const (
	ErrKindNotExist   = "not_exist"
	ErrKindPermission = "permission"
	ErrKindNotRegular = "not_regular"
	ErrKindLoop       = "symlink_loop"
	ErrKindIO         = "io"
)

// ErrorKinds lists the kinds of follower errors.
var ErrorKinds = []string{ErrKindNotExist, ErrKindPermission, ErrKindNotRegular, ErrKindLoop, ErrKindIO}

// errorKind names the kind of err.
func errorKind(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ErrKindNotExist
	case errors.Is(err, fs.ErrPermission):
		return ErrKindPermission
	case errors.Is(err, ErrNotRegular):
		return ErrKindNotRegular
	case errors.Is(err, syscall.ELOOP):
		return ErrKindLoop
	}
	return ErrKindIO
}

// Follower calls a function for every line appended to the file at Path,
// like `tail -F`, for as long as its context lasts. It never stops on an
// error: whatever keeps it from reading (the path missing, unreadable, a
// directory, a device, a symlink loop, an I/O error) is retried with
// back-off, logged once when it starts and once when it ends, and shown in
// Status.
//
// It knows the file it reads by identity (device and inode) and by a
// fingerprint of its first bytes, not by its size: when Path names another
// regular file (rename and create, as logrotate and postfix logrotate do)
// it reads what is left of the old one and then the new one from its
// start; when the file it reads was truncated (copytruncate), whether it
// is now shorter or has grown again past the old offset, it reads it again
// from its start. Lines longer than maxLine are skipped whole.
type Follower struct {
	Path string
	// FromStart reads the file present at start from its beginning; by
	// default that one file is read from where it ended at start. Any
	// other file found at Path later is read from its beginning.
	FromStart bool
	// Poll is the wait between two looks at a readable file.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait while it cannot read.
	MinBackoff, MaxBackoff time.Duration
	// Clock paces the polls; default SystemWaiter.
	Clock Waiter
	// Open opens Path; default OpenRegular.
	Open func(path string) (*os.File, error)
	// Log gets one line when a failure starts and one when it ends.
	Log *slog.Logger
	// Status is kept up to date (default: a new one).
	Status *FollowStatus
}

// Follow calls fn for every line appended to the file at path until ctx is
// done; see Follower. It returns only when ctx is done.
func Follow(ctx context.Context, path string, fromStart bool, poll time.Duration, fn func(line string)) error {
	f := &Follower{Path: path, FromStart: fromStart, Poll: poll}
	return f.Run(ctx, fn)
}

// tailed is the file being read.
type tailed struct {
	f      *os.File
	info   fs.FileInfo
	offset int64
	fpLen  int
	fp     [sha256.Size]byte
}

// fingerprint hashes the first n bytes; ok is false when fewer could be
// read.
func (t *tailed) fingerprint(n int) ([sha256.Size]byte, bool) {
	var buf [fingerprintLen]byte
	if m, _ := t.f.ReadAt(buf[:n], 0); m < n {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256(buf[:n]), true
}

// refresh extends the fingerprint to the first fingerprintLen bytes (or
// as many as the file has).
func (t *tailed) refresh(size int64) {
	n := int(min(size, fingerprintLen))
	if n <= t.fpLen {
		return
	}
	if fp, ok := t.fingerprint(n); ok {
		t.fp, t.fpLen = fp, n
	}
}

// truncated reports whether the file was cut since it was read (shorter
// than the offset, or other leading bytes).
func (t *tailed) truncated(size int64) bool {
	if size < t.offset {
		return true
	}
	if t.fpLen == 0 {
		return false
	}
	fp, ok := t.fingerprint(t.fpLen)
	return !ok || fp != t.fp
}

// follow is the state of one Run.
type follow struct {
	*Follower
	lr      *lineReader
	buf     []byte // one read
	cur     *tailed
	start   fs.FileInfo // the file at Path at start (read from its end)
	started bool        // a file has been opened
	failing bool
	kind    string
	since   time.Time
	retries int
}

// Run follows Path until ctx is done, calling fn for each line; it
// returns nil then.
func (f *Follower) Run(ctx context.Context, fn func(line string)) error {
	if f.Poll <= 0 {
		f.Poll = DefaultDeliveriesPoll
	}
	if f.MinBackoff <= 0 {
		f.MinBackoff = DefaultMinBackoff
	}
	if f.MaxBackoff < f.MinBackoff {
		f.MaxBackoff = max(DefaultMaxBackoff, f.MinBackoff)
	}
	if f.Clock == nil {
		f.Clock = SystemWaiter{}
	}
	if f.Open == nil {
		f.Open = OpenRegular
	}
	if f.Log == nil {
		f.Log = slog.New(slog.DiscardHandler)
	}
	if f.Status == nil {
		f.Status = &FollowStatus{}
	}
	st := &follow{Follower: f, buf: make([]byte, readChunk)}
	st.lr = &lineReader{fn: func(line string) {
		f.Status.line(f.Clock.Now())
		fn(line)
	}}
	f.Status.begin(f.Path, f.Clock.Now())
	if fi, err := os.Stat(f.Path); err == nil && fi.Mode().IsRegular() && !f.FromStart {
		st.start = fi
	}
	defer func() {
		if st.cur != nil {
			st.cur.f.Close()
		}
	}()
	backoff := f.MinBackoff
	for {
		more, err := st.step(ctx)
		wait := f.Poll
		if err != nil {
			st.fail(err)
			wait = backoff
			backoff = min(2*backoff, f.MaxBackoff)
		} else {
			st.ok()
			backoff = f.MinBackoff
			if more {
				wait = 0
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if wait == 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.Clock.After(wait):
		}
	}
}

// fail records a failure; the first of an episode is logged.
func (s *follow) fail(err error) {
	kind := errorKind(err)
	now := s.Clock.Now()
	s.Status.fail(kind, err, now)
	if !s.failing {
		s.failing, s.kind, s.since, s.retries = true, kind, now, 0
		s.Log.Warn("delivery log unreadable, retrying with back-off", "event", "delivery_log", "source", s.Path, "kind", kind, "err", err)
		return
	}
	s.retries++
}

// ok ends a failure episode (logged once).
func (s *follow) ok() {
	if !s.failing {
		return
	}
	now := s.Clock.Now()
	s.Status.recover()
	s.Log.Info("delivery log readable again", "event", "delivery_log", "source", s.Path, "kind", s.kind,
		"after", now.Sub(s.since).Round(time.Millisecond).String(), "retries", s.retries)
	s.failing = false
}

// open opens the file at Path and places it: the file found there at start
// at its end unless FromStart, any other at its beginning.
func (s *follow) open() (*tailed, error) {
	f, err := s.Open(s.Path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	t := &tailed{f: f, info: fi}
	if !s.started && s.start != nil && os.SameFile(s.start, fi) && s.start.Size() <= fi.Size() {
		t.offset = s.start.Size()
	}
	s.started = true
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	t.refresh(fi.Size())
	return t, nil
}

// step looks at Path (rotation, truncation), then reads what is new. more
// is true when the read budget ran out before the end of the file; err is
// what keeps the follower from reading Path (the file it holds is read
// anyway).
func (s *follow) step(ctx context.Context) (more bool, err error) {
	if s.cur == nil {
		if s.cur, err = s.open(); err != nil {
			s.Status.lagUnknown()
			return false, err
		}
	}
	// Look at the path before reading: a file truncated and regrown within
	// one poll must not be read from the old offset.
	var pathErr error
	switched := false
	pst, perr := os.Stat(s.Path)
	switch {
	case perr != nil && errors.Is(perr, fs.ErrNotExist):
		// Renamed away, the new file not written yet (postfix logrotate
		// creates it with the next line): go on with the old one.
	case perr != nil:
		pathErr = perr
	case !pst.Mode().IsRegular():
		pathErr = &fs.PathError{Op: "stat", Path: s.Path, Err: notRegular(pst.Mode())}
	case !os.SameFile(pst, s.cur.info):
		// Another file: open it first (should that fail, keep reading the
		// old one), read the rest of the old one, then switch.
		next, err := s.open()
		if err != nil {
			pathErr = err
			break
		}
		if _, err := s.drain(ctx, 0); err != nil {
			s.Log.Warn("delivery log: reading the rest of the rotated file", "event", "delivery_log", "source", s.Path, "err", err)
		}
		s.lr.flush()
		s.cur.f.Close()
		s.cur = next
		s.Status.rotated(RotationRename)
		switched = true
	}
	if !switched {
		// The file held, whatever the path names now: cut in place?
		fi, err := s.cur.f.Stat()
		if err != nil {
			return false, err
		}
		if s.cur.truncated(fi.Size()) {
			s.lr.flush()
			s.cur.offset, s.cur.fpLen = 0, 0
			if _, err := s.cur.f.Seek(0, io.SeekStart); err != nil {
				return false, err
			}
			s.Status.rotated(RotationTruncate)
		}
		s.cur.refresh(fi.Size())
	}
	more, err = s.drain(ctx, stepBudget)
	if err != nil {
		return false, err
	}
	if perr != nil {
		pst = nil
	}
	s.lag(pst, pathErr)
	return more, pathErr
}

// drain reads the current file to its end, or budget bytes (0: no bound).
func (s *follow) drain(ctx context.Context, budget int64) (bool, error) {
	var read int64
	for ctx.Err() == nil {
		n, err := s.cur.f.Read(s.buf)
		if n > 0 {
			s.cur.offset += int64(n)
			read += int64(n)
			s.lr.feed(s.buf[:n])
			if budget > 0 && read >= budget {
				return true, nil
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		return false, nil
	}
	return false, nil
}

// lag records how much is left to read: of the current file, and of the
// file at the path when it is another one (pst, when it is a regular
// file). The follower is up to date when nothing is left and nothing
// keeps it from reading the path.
func (s *follow) lag(pst fs.FileInfo, pathErr error) {
	fi, err := s.cur.f.Stat()
	if err != nil {
		s.Status.lagUnknown()
		return
	}
	n := max(fi.Size()-s.cur.offset, 0)
	if pst != nil && pst.Mode().IsRegular() && !os.SameFile(pst, s.cur.info) {
		n += pst.Size()
	}
	s.Status.setLag(n, n == 0 && pathErr == nil, s.Clock.Now())
}

// lineReader splits a byte stream into lines, dropping overlong ones.
type lineReader struct {
	fn   func(string)
	line []byte
	skip bool
}

func (l *lineReader) feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.add(p)
			return
		}
		l.add(p[:i])
		l.end()
		p = p[i+1:]
	}
}

func (l *lineReader) add(p []byte) {
	if l.skip {
		return
	}
	if len(l.line)+len(p) > maxLine {
		l.skip, l.line = true, l.line[:0]
		return
	}
	l.line = append(l.line, p...)
}

func (l *lineReader) end() {
	if !l.skip {
		l.fn(string(l.line))
	}
	l.skip, l.line = false, l.line[:0]
}

// flush delivers a last line without its newline.
func (l *lineReader) flush() {
	if len(l.line) > 0 || l.skip {
		l.end()
	}
}

// ReadLines calls fn for every line of r (standard input: `journalctl -f
// -o cat -u postfix | aupguard serve ...`) until r ends or ctx is done.
// Overlong lines are skipped whole.
func ReadLines(ctx context.Context, r io.Reader, fn func(line string)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	lr := &lineReader{fn: fn}
	for ctx.Err() == nil {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			lr.feed(chunk)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			lr.flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	return nil
}
