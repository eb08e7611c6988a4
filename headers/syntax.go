package headers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// SyntaxName is the name of the header syntax check.
const SyntaxName = "header_syntax"

// Findings of header_syntax.
const (
	FindingHeaderCount      = "header_count_exceeded"
	FindingHeaderSize       = "header_section_too_large"
	FindingHeaderName       = "header_name_invalid"
	FindingHeaderNUL        = "header_nul"
	FindingHeaderBareCR     = "header_bare_cr"
	FindingHeaderBareLF     = "header_bare_lf"
	FindingHeaderFolding    = "header_bad_folding"
	FindingHeaderControl    = "header_control_char"
	FindingHeaderLongLine   = "header_line_too_long"
	FindingEncodedWordCtrl  = "encoded_word_control"
	defaultSyntaxMaxLineLen = 998
)

// Syntax is the header_syntax check: header data that is malformed or
// hides what it says, against the AUP's "present header data as clearly as
// possible" and "not alter or obfuscate any email header".
type Syntax struct {
	s *Settings
}

// NewSyntax builds the header_syntax check.
func NewSyntax(s *Settings) *Syntax { return &Syntax{s: s} }

// Name implements policy.Check.
func (c *Syntax) Name() string { return SyntaxName }

func syntaxFinding(name, detail string, attrs map[string]string) policy.Finding {
	return policy.Finding{Name: name, Detail: detail, Action: policy.Reject, Reply: ReplyForged, Attrs: attrs}
}

// EOM implements policy.EOMChecker.
func (c *Syntax) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	var col collector
	// Absurd header sections: configurable caps (a resource limit, and a
	// way to bury the real fields among thousands of fake ones).
	if c.s.MaxCount > 0 && len(t.Headers) > c.s.MaxCount {
		col.add(syntaxFinding(FindingHeaderCount,
			fmt.Sprintf("%d header fields, limit %d", len(t.Headers), c.s.MaxCount),
			map[string]string{"count": strconv.Itoa(len(t.Headers))}))
	}
	size := t.HeaderBytes
	if size == 0 {
		for _, h := range t.Headers {
			size += int64(len(h.Name) + 1 + len(h.Value) + 2)
		}
	}
	if c.s.MaxBytes > 0 && size > c.s.MaxBytes {
		col.add(syntaxFinding(FindingHeaderSize,
			fmt.Sprintf("header section of %d octets, limit %d", size, c.s.MaxBytes),
			map[string]string{"size": strconv.FormatInt(size, 10)}))
	}
	maxLine := c.s.MaxLineLength
	if maxLine <= 0 {
		maxLine = defaultSyntaxMaxLineLen
	}
	for _, h := range t.Headers {
		c.field(&col, h, maxLine)
	}
	return col.findings(), nil
}

func (c *Syntax) field(col *collector, h policy.Header, maxLine int) {
	attrs := func() map[string]string { return map[string]string{"header": clip(h.Name)} }
	// RFC 5322 §2.2: a field name is printable US-ASCII except colon,
	// at least one character (ftext).
	if bad, why := badFieldName(h.Name); bad {
		col.add(syntaxFinding(FindingHeaderName, fmt.Sprintf("header name %q: %s", clip(h.Name), why), attrs()))
	}
	v := h.Value
	// RFC 5322 §2.2: a field body may not contain NUL (nor any CR or LF
	// other than in folding, §2.2.3).
	if strings.IndexByte(h.Name+v, 0) >= 0 {
		col.add(syntaxFinding(FindingHeaderNUL, fmt.Sprintf("NUL byte in %s", clip(h.Name)), attrs()))
	}
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\r':
			if i+1 >= len(v) || v[i+1] != '\n' {
				// RFC 5322 §2.3: CR and LF only occur together as CRLF.
				col.add(syntaxFinding(FindingHeaderBareCR, fmt.Sprintf("bare CR in %s", clip(h.Name)), attrs()))
			}
		case '\n':
			// Values arrive with folding as CRLF (the milter adapter and
			// SplitHeader make it so); an LF without CR is bare (RFC 5322
			// §2.3). After a CRLF, RFC 5322 §2.2.3 folding puts white
			// space; anything else starts a new, injected field.
			if i > 0 && v[i-1] == '\r' {
				if i+1 < len(v) && v[i+1] != ' ' && v[i+1] != '\t' {
					col.add(syntaxFinding(FindingHeaderFolding, fmt.Sprintf("line break not followed by white space in %s", clip(h.Name)), attrs()))
				}
			} else {
				col.add(syntaxFinding(FindingHeaderBareLF, fmt.Sprintf("bare LF in %s", clip(h.Name)), attrs()))
			}
		}
	}
	// RFC 5322 §2.1.1: each line at most 998 octets, excluding the CRLF.
	// The first line holds the name and the colon too.
	n := len(h.Name) + 1
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '\n' {
			if n > maxLine {
				col.add(syntaxFinding(FindingHeaderLongLine,
					fmt.Sprintf("line of %d octets in %s, limit %d", n, clip(h.Name), maxLine), attrs()))
			}
			n = 0
			continue
		}
		if v[i] != '\r' {
			n++
		}
	}
	// RFC 5322 §3.2.5 field bodies are VCHAR and WSP (and UTF-8 under
	// RFC 6532); other raw control characters hide or garble text.
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b != 0 && b != '\r' && b != '\n' && b != '\t' && (b < 0x20 || b == 0x7f) {
			col.add(syntaxFinding(FindingHeaderControl, fmt.Sprintf("control character 0x%02x in %s", b, clip(h.Name)), attrs()))
			break
		}
	}
	// RFC 2047 §5 encoded-words carry display text; one that decodes to a
	// control character (a CR LF pair to fake extra fields, bidi overrides
	// to reverse what is shown) obfuscates the header.
	if strings.Contains(v, "=?") {
		for _, w := range EncodedWords(v) {
			if !w.OK {
				continue
			}
			if r, ok := HasControl(w.Decoded); ok {
				col.add(syntaxFinding(FindingEncodedWordCtrl,
					fmt.Sprintf("encoded-word in %s decodes to control character U+%04X", clip(h.Name), r), attrs()))
				break
			}
		}
	}
}

// badFieldName says whether a field name breaks RFC 5322 §2.2 and why.
func badFieldName(name string) (bool, string) {
	if name == "" {
		return true, "empty name (line without a colon)"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 33 || c > 126 || c == ':' {
			return true, fmt.Sprintf("character 0x%02x not allowed", c)
		}
	}
	return false, ""
}
