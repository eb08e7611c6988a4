package optout

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// ErrMalformedReport is wrapped by every error about the report itself.
var ErrMalformedReport = errors.New("malformed feedback report")

// maxReportSize bounds one report; maxFeedbackPart its machine-readable
// part (RFC 5965 §3: a few fields; room for thousands of Original-Rcpt-To,
// which are counted, not taken).
const (
	maxReportSize   = 10 << 20
	maxFeedbackPart = 256 << 10
)

// Report is an Abuse Reporting Format report (RFC 5965).
type Report struct {
	// FeedbackType is the Feedback-Type field, lower-cased (§3.1: abuse,
	// fraud, other, virus; RFC 6430 adds not-spam).
	FeedbackType string
	UserAgent    string
	Version      string
	// OriginalMailFrom and OriginalRcptTo are the envelope of the reported
	// message (§3.2, optional; mailbox providers often redact the latter).
	OriginalMailFrom string
	OriginalRcptTo   []string
	SourceIP         string
	ArrivalDate      string
	// Original holds the reported message's header fields, from the third
	// part (message/rfc822 or text/rfc822-headers); nil when absent.
	Original textproto.MIMEHeader
	// FromDomain is the domain of the report's own From (the feedback
	// loop that sent it), lower-cased; "" when it has none. It is what
	// the report says, as trustworthy as the path it came by.
	FromDomain string
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedReport, fmt.Sprintf(format, args...))
}

// ParseReport parses one ARF report: a message whose Content-Type is
// multipart/report with report-type=feedback-report (RFC 5965 §2, RFC 6522),
// holding a human-readable part, a message/feedback-report part and the
// original message or its header section.
func ParseReport(r io.Reader) (*Report, error) {
	cr := &capReader{r: r, n: maxReportSize}
	rep, err := parseReport(cr)
	if cr.over {
		return nil, ErrReportTooLarge
	}
	return rep, err
}

func parseReport(r io.Reader) (*Report, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(r))
	if err != nil {
		return nil, malformed("not a mail message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return nil, malformed("bad Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	// RFC 5965 §2 (a): the report is multipart/report, report-type
	// feedback-report.
	if mt != "multipart/report" {
		return nil, malformed("Content-Type is %s, want multipart/report", mt)
	}
	if !strings.EqualFold(params["report-type"], "feedback-report") {
		return nil, malformed("report-type is %q, want feedback-report", params["report-type"])
	}
	if params["boundary"] == "" {
		return nil, malformed("multipart/report without boundary")
	}
	rep := &Report{}
	if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
		if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
			rep.FromDomain = strings.TrimSuffix(strings.ToLower(a.Address[i+1:]), ".")
		}
	}
	var sawFeedback bool
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 1; ; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// RFC 2046 §5.1.1: a multipart body ends with its closing
				// delimiter; without it the report was cut short.
				return nil, malformed("the multipart/report ends after part %d without its closing boundary \"--%s--\" (truncated report?)", i-1, params["boundary"])
			}
			return nil, malformed("MIME part %d: %v", i, err)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			pt = "text/plain" // RFC 2045 §5.2 default
		}
		body := decodePart(p)
		switch pt {
		case "message/feedback-report":
			if sawFeedback {
				return nil, malformed("more than one message/feedback-report part")
			}
			sawFeedback = true
			if err := rep.parseFields(body); err != nil {
				return nil, err
			}
		case "message/rfc822", "text/rfc822-headers":
			h, err := textproto.NewReader(bufio.NewReader(io.LimitReader(body, 1<<20))).ReadMIMEHeader()
			if len(h) == 0 && err != nil {
				return nil, malformed("part %d (%s): no readable header section: %v", i, pt, err)
			}
			rep.Original = h
		}
	}
	if !sawFeedback {
		return nil, malformed("no message/feedback-report part")
	}
	return rep, nil
}

// decodePart undoes a part's Content-Transfer-Encoding.
func decodePart(p *multipart.Part) io.Reader {
	switch strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &lineJoiner{r: p})
	case "quoted-printable":
		return quotedprintable.NewReader(p)
	}
	return p
}

// lineJoiner drops CR and LF, for base64 bodies split into lines.
type lineJoiner struct{ r io.Reader }

func (l *lineJoiner) Read(b []byte) (int, error) {
	for {
		n, err := l.r.Read(b)
		j := 0
		for _, c := range b[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				b[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// parseFields reads the machine-readable part (RFC 5965 §3).
func (rep *Report) parseFields(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, maxFeedbackPart+1))
	if err != nil {
		return malformed("feedback-report part: %v", err)
	}
	if len(b) > maxFeedbackPart {
		// Never a silently cut part: fields past the cut (another
		// Original-Rcpt-To) would go unseen.
		return malformed("the message/feedback-report part is larger than %d KiB", maxFeedbackPart>>10)
	}
	// The part's fields end at the end of the part; textproto wants a
	// blank line after them.
	b = append(bytes.TrimRight(b, "\r\n"), "\r\n\r\n"...)
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return malformed("feedback-report part: %v", err)
	}
	rep.FeedbackType = strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))
	rep.UserAgent = h.Get("User-Agent")
	rep.Version = h.Get("Version")
	rep.OriginalMailFrom = strings.TrimSpace(h.Get("Original-Mail-From"))
	for _, v := range h.Values("Original-Rcpt-To") {
		if v = strings.TrimSpace(v); v != "" {
			rep.OriginalRcptTo = append(rep.OriginalRcptTo, v)
		}
	}
	rep.SourceIP = h.Get("Source-IP")
	rep.ArrivalDate = h.Get("Arrival-Date")
	// RFC 5965 §3.1: Feedback-Type, User-Agent and Version are required;
	// only Feedback-Type is needed here, the others are tolerated missing
	// (some feedback loops omit them).
	if rep.FeedbackType == "" {
		return malformed("feedback-report part has no Feedback-Type field")
	}
	return nil
}

// ErrReportTooLarge is returned for a report larger than MaxReportSize;
// nothing of it is recorded.
var ErrReportTooLarge = fmt.Errorf("%w: report larger than %d bytes", ErrMalformedReport, MaxReportSize)

// MaxReportSize bounds one complaint report (ARF message), in an mbox or
// alone.
const MaxReportSize = maxReportSize

// capReader reads at most n bytes and notes whether there was more.
type capReader struct {
	r    io.Reader
	n    int64
	over bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var one [1]byte
		if k, _ := io.ReadFull(c.r, one[:]); k > 0 {
			c.over = true
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	return k, err
}

// appendCapped appends p to b, growing b by doubling but never past
// limit bytes of capacity (len(b)+len(p) <= limit).
func appendCapped(b, p []byte, limit int) []byte {
	if cap(b)-len(b) < len(p) {
		nb := make([]byte, len(b), min(max(2*cap(b), len(b)+len(p), 4096), limit))
		copy(nb, b)
		b = nb
	}
	return append(b, p...)
}

// SplitMbox calls fn with each message of an mbox (mboxrd: a line "From "
// at the start or after a blank line starts a message, ">From " lines are
// unquoted). Input that does not start with "From " is one message. A
// message larger than MaxReportSize is skipped (SplitMboxLines tells it).
func SplitMbox(r io.Reader, fn func(msg []byte) error) error {
	return SplitMboxLines(r, func(msg []byte, _ int, err error) error {
		if err != nil {
			return nil
		}
		return fn(msg)
	})
}

// SplitMboxLines is SplitMbox that also tells fn the line of the input
// where each message starts (its "From " line; 1 for a single message), so
// that a bad report can be named, and gives fn ErrReportTooLarge (msg nil)
// for a message larger than MaxReportSize. Memory is bounded whatever the
// input: one message of at most MaxReportSize and a fixed read buffer (a
// line is read in pieces however long it is).
func SplitMboxLines(r io.Reader, fn func(msg []byte, line int, err error) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	first, err := br.Peek(5)
	if err != nil && len(first) == 0 {
		return malformed("empty input")
	}
	if string(first) != "From " {
		cr := &capReader{r: br, n: maxReportSize}
		b, err := io.ReadAll(cr)
		if err != nil {
			return err
		}
		if cr.over {
			return fn(nil, 1, ErrReportTooLarge)
		}
		return fn(b, 1, nil)
	}
	var cur []byte
	started, prevBlank, tooLarge := false, true, false
	lineNo, startLine := 0, 0
	atStart := true // the next piece begins a line
	emit := func() error {
		if tooLarge {
			return fn(nil, startLine, ErrReportTooLarge)
		}
		return fn(bytes.TrimRight(cur, "\r\n"), startLine, nil)
	}
	for {
		piece, err := br.ReadSlice('\n')
		if len(piece) > 0 {
			lineStart := atStart
			atStart = piece[len(piece)-1] == '\n'
			if lineStart {
				lineNo++
			}
			switch {
			case lineStart && prevBlank && bytes.HasPrefix(piece, []byte("From ")):
				if started {
					if e := emit(); e != nil {
						return e
					}
				}
				cur = cur[:0]
				started, startLine, tooLarge = true, lineNo, false
			default:
				if lineStart && len(piece) > 1 && piece[0] == '>' && bytes.HasPrefix(bytes.TrimLeft(piece, ">"), []byte("From ")) {
					piece = piece[1:]
				}
				if len(cur)+len(piece) > maxReportSize {
					tooLarge = true
					cur = cur[:0]
				}
				if !tooLarge {
					cur = appendCapped(cur, piece, maxReportSize)
				}
			}
			if lineStart {
				prevBlank = len(bytes.TrimRight(piece, "\r\n")) == 0
			} else if len(bytes.TrimRight(piece, "\r\n")) > 0 {
				prevBlank = false
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	if started {
		return emit()
	}
	return nil
}
