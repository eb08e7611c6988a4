package optout

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"unicode"
	"unicode/utf8"
)

// MaxCSVRecord bounds one record of a CSV import: a line, or the lines of
// a quoted field that spans several. A longer record is reported as a bad
// line and skipped without being held in memory.
const MaxCSVRecord = 64 << 10

// The states of recordReader's scan, which follows encoding/csv's rules
// (TrimLeadingSpace, no LazyQuotes) just far enough to know where a record
// ends: a quote opens a quoted field only at the start of a field, "" is a
// quote inside one, and a record ends at the end of a line outside a
// quoted field or at a syntax error.
const (
	stFieldStart = iota
	stUnquoted
	stQuoted
	stQuoteInQuoted
	stError
)

// recordReader splits CSV input into records in bounded memory: at most
// MaxCSVRecord bytes of a record are kept (the rest is scanned, not kept)
// and the input is read through a fixed buffer whatever its line lengths.
type recordReader struct {
	br   *bufio.Reader
	line int // physical lines read
	buf  []byte
	st   int
	pend []byte // a multi-byte rune at a field's start, being decoded
}

func newRecordReader(r io.Reader) *recordReader {
	return &recordReader{br: bufio.NewReaderSize(r, 64<<10), buf: make([]byte, 0, 4096)}
}

// next returns the next record (its bytes, valid until the next call),
// the lines it spans, and tooLong when it was longer than MaxCSVRecord
// (rec is then nil). io.EOF after the last record.
func (rr *recordReader) next() (rec []byte, start, end int, tooLong bool, err error) {
	rr.buf = rr.buf[:0]
	rr.st = stFieldStart
	rr.pend = rr.pend[:0]
	start = rr.line + 1
	read := false
	for {
		chunk, rerr := rr.br.ReadSlice('\n')
		if len(chunk) > 0 {
			read = true
			if !tooLong {
				if len(rr.buf)+len(chunk) > MaxCSVRecord {
					tooLong = true
					rr.buf = rr.buf[:0]
				} else {
					rr.buf = append(rr.buf, chunk...)
				}
			}
		}
		eol := len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
		body := chunk
		if eol {
			body = body[:len(body)-1]
			if n := len(body); n > 0 && body[n-1] == '\r' {
				body = body[:n-1]
			}
		}
		rr.scan(body)
		if eol || (rerr == io.EOF && len(chunk) > 0) {
			rr.line++
			if rr.st != stQuoted || rerr == io.EOF {
				end = rr.line
				if tooLong {
					return nil, start, end, true, nil
				}
				return rr.buf, start, end, false, nil
			}
			// A quoted field goes on on the next line.
			rr.st = stQuoted
			continue
		}
		if rerr == nil || errors.Is(rerr, bufio.ErrBufferFull) {
			continue
		}
		if rerr == io.EOF {
			if read {
				end = rr.line
				if tooLong {
					return nil, start, end, true, nil
				}
				return rr.buf, start, end, false, nil
			}
			return nil, 0, 0, false, io.EOF
		}
		return nil, 0, 0, false, rerr
	}
}

// scan moves the state over b, part of one line without its ending.
func (rr *recordReader) scan(b []byte) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch rr.st {
		case stFieldStart:
			if len(rr.pend) > 0 || c >= utf8.RuneSelf {
				rr.pend = append(rr.pend, c)
				if !utf8.FullRune(rr.pend) && len(rr.pend) < utf8.UTFMax {
					continue
				}
				r, _ := utf8.DecodeRune(rr.pend)
				rr.pend = rr.pend[:0]
				if !unicode.IsSpace(r) {
					rr.st = stUnquoted
				}
				continue
			}
			switch {
			case c == '"':
				rr.st = stQuoted
			case c == ',':
			case unicode.IsSpace(rune(c)):
			default:
				rr.st = stUnquoted
			}
		case stUnquoted:
			switch c {
			case ',':
				rr.st = stFieldStart
			case '"':
				rr.st = stError
			default:
				// Skip to the next byte that matters.
				j := bytes.IndexAny(b[i:], ",\"")
				if j < 0 {
					return
				}
				i += j - 1
			}
		case stQuoted:
			if c == '"' {
				rr.st = stQuoteInQuoted
				continue
			}
			j := bytes.IndexByte(b[i:], '"')
			if j < 0 {
				return
			}
			i += j - 1
		case stError:
			return
		case stQuoteInQuoted:
			switch c {
			case '"':
				rr.st = stQuoted
			case ',':
				rr.st = stFieldStart
			default:
				rr.st = stError
			}
		}
	}
}
