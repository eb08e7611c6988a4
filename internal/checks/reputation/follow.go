package reputation

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"
)

// Follow calls fn for every line appended to the file at path, like
// `tail -F`, until ctx is done. It survives rotation: when path names a
// new file (rename and create, as logrotate and newsyslog do), it reads
// what is left of the old one and then the new one from its start; when
// the file shrinks (copytruncate), it starts again at its beginning. A
// file that does not exist yet is waited for. fromStart reads the file
// present at start from its beginning instead of its end. Lines longer
// than maxLine are skipped whole.
func Follow(ctx context.Context, path string, fromStart bool, poll time.Duration, fn func(line string)) error {
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			return true
		}
	}
	first := true
	for {
		f, err := os.Open(path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			first = false // a file created later is read from its start
			if !wait() {
				return nil
			}
			continue
		}
		if first && !fromStart {
			if _, err := f.Seek(0, io.SeekEnd); err != nil {
				f.Close()
				return err
			}
		}
		first = false
		err = followOne(ctx, f, path, wait, fn)
		f.Close()
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// followOne reads f until path names another file (rotation) or ctx ends.
func followOne(ctx context.Context, f *os.File, path string, wait func() bool, fn func(string)) error {
	lr := &lineReader{fn: fn}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			lr.feed(buf[:n])
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		// At the end: has the file been rotated or truncated?
		cur, err := f.Stat()
		if err != nil {
			return err
		}
		now, err := os.Stat(path)
		switch {
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		case err == nil && !os.SameFile(cur, now):
			// Rotated: drain what was written to the old file before
			// the switch, then go to the new one.
			for {
				n, _ := f.Read(buf)
				if n == 0 {
					break
				}
				lr.feed(buf[:n])
			}
			lr.flush()
			return nil
		}
		if pos, err := f.Seek(0, io.SeekCurrent); err == nil && cur.Size() < pos {
			// Truncated in place (copytruncate).
			lr.flush()
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			continue
		}
		if !wait() {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// lineReader splits a byte stream into lines, dropping overlong ones.
type lineReader struct {
	fn   func(string)
	line []byte
	skip bool
}

func (l *lineReader) feed(p []byte) {
	for len(p) > 0 {
		i := indexByte(p, '\n')
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

func indexByte(p []byte, c byte) int {
	for i, b := range p {
		if b == c {
			return i
		}
	}
	return -1
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
