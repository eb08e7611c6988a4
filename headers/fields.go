package headers

import (
	"bytes"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// SplitHeader splits the header section of a raw message into fields the
// way an MTA hands them to a milter: the name, and the raw value after the
// colon with its leading white space and with continuation lines joined
// by CRLF (RFC 5322 §2.2.3). It returns the fields and the offset where
// the body starts (after the empty line), or len(data) when there is none.
//
// A message that uses CRLF line ends is split at CRLF only, so that a bare
// LF or CR inside a line stays in the value for header_syntax to see; a
// message stored with LF line ends is split at LF. A line that is neither
// a field nor a continuation keeps its text as the name and an empty value
// (RFC 5322 §2.2 requires the colon; header_syntax reports such names).
// SplitHeader never panics and runs in linear time.
func SplitHeader(data []byte) ([]policy.Header, int) {
	sep := []byte("\n")
	if bytes.Contains(data, []byte("\r\n")) {
		sep = []byte("\r\n")
	}
	var hs []policy.Header
	pos := 0
	for pos < len(data) {
		end := bytes.Index(data[pos:], sep)
		next := len(data)
		line := data[pos:]
		if end >= 0 {
			line = data[pos : pos+end]
			next = pos + end + len(sep)
		}
		if len(sep) == 1 {
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if len(line) == 0 {
			return hs, next
		}
		switch {
		case (line[0] == ' ' || line[0] == '\t') && len(hs) > 0:
			hs[len(hs)-1].Value += "\r\n" + string(line)
		default:
			if i := bytes.IndexByte(line, ':'); i >= 0 {
				hs = append(hs, policy.Header{Name: string(line[:i]), Value: string(line[i+1:])})
			} else {
				hs = append(hs, policy.Header{Name: string(line)})
			}
		}
		pos = next
	}
	return hs, len(data)
}
