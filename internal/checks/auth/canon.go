package auth

import (
	"io"
	"strings"
	"unicode/utf8"
)

// relaxedHeader returns a header field in the "relaxed" header
// canonicalization of RFC 6376 §3.4.2: name lower-cased, value unfolded,
// runs of white space reduced to one space, white space at the end of the
// value and around the colon removed; CRLF-terminated. value is the raw
// value after the colon, as the MTA passes it.
func relaxedHeader(name, value string) string {
	return string(appendRelaxedHeader(make([]byte, 0, len(name)+len(value)+3), name, value))
}

// appendRelaxedHeader appends relaxedHeader(name, value) to dst.
func appendRelaxedHeader(dst []byte, name, value string) []byte {
	name = strings.TrimRight(name, " \t")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			continue
		}
		// A name that is not ASCII (no valid field name, RFC 5322 §2.2):
		// lower-cased as before, rune by rune.
		dst = append(dst, strings.ToLower(name[i:])...)
		break
	}
	dst = append(dst, ':')
	wsp := false
	wrote := false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch c {
		case '\r', '\n':
			// Unfold: the line break of a continuation goes, the white
			// space that starts the next line is reduced below.
			continue
		case ' ', '\t':
			wsp = true
			continue
		}
		if wsp && wrote {
			dst = append(dst, ' ')
		}
		wsp = false
		wrote = true
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// relaxedBody is the "relaxed" body canonicalization of RFC 6376 §3.4.4,
// streaming: it writes the canonical body to w as chunks arrive, holding
// back only pending white space and empty lines (which are dropped at the
// end of the body). Input lines end in CRLF.
type relaxedBody struct {
	w       io.Writer
	buf     []byte
	wsp     bool // white space seen and not yet written
	content bool // the current line has content
	cr      bool // the previous byte was a CR
	empties int  // empty lines not yet written
}

func newRelaxedBody(w io.Writer) *relaxedBody {
	return &relaxedBody{w: w, buf: make([]byte, 0, 8192)}
}

// Write canonicalizes a chunk.
func (r *relaxedBody) Write(p []byte) (int, error) {
	for _, c := range p {
		if r.cr {
			r.cr = false
			if c == '\n' {
				r.endLine()
				continue
			}
			// A CR that ends no line is content.
			r.content1('\r')
		}
		switch c {
		case '\r':
			r.cr = true
		case ' ', '\t':
			r.wsp = true
		default:
			r.content1(c)
		}
		if len(r.buf) >= cap(r.buf)-4 {
			if err := r.flush(); err != nil {
				return 0, err
			}
		}
	}
	return len(p), r.flush()
}

// content1 writes one content byte, after the empty lines and the single
// space that precede it.
func (r *relaxedBody) content1(c byte) {
	if !r.content {
		for ; r.empties > 0; r.empties-- {
			r.buf = append(r.buf, '\r', '\n')
			r.flushIfFull()
		}
	}
	if r.wsp {
		// RFC 6376 §3.4.4: reduce all sequences of WSP within a line
		// to a single SP (at the start of a line too).
		r.buf = append(r.buf, ' ')
		r.wsp = false
	}
	r.buf = append(r.buf, c)
	r.content = true
}

func (r *relaxedBody) flushIfFull() {
	if len(r.buf) >= cap(r.buf)-4 {
		_ = r.flush()
	}
}

// endLine ends a line: trailing white space is dropped; an empty line is
// held back, since empty lines at the end of the body are ignored.
func (r *relaxedBody) endLine() {
	r.wsp = false
	if r.content {
		r.buf = append(r.buf, '\r', '\n')
		r.content = false
		return
	}
	r.empties++
}

func (r *relaxedBody) flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.w.Write(r.buf)
	r.buf = r.buf[:0]
	return err
}

// Close ends the body: a last line without CRLF gets one, trailing empty
// lines are dropped (an empty body stays empty, RFC 6376 errata 3133).
func (r *relaxedBody) Close() error {
	if r.cr {
		r.cr = false
		r.content1('\r')
	}
	if r.content {
		r.buf = append(r.buf, '\r', '\n')
		r.content = false
	}
	return r.flush()
}
