// Package policy holds the gateway's decision model: replies, findings,
// verdicts, the per-message transaction the checks look at, the check
// interfaces and the chain that runs them. It does no I/O.
package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Reply is an SMTP reply: a three-digit code, an RFC 3463 enhanced status
// code and a short client-facing text. A Reply can only be built through
// NewReply (or the Must helpers), which keep the class of the code and the
// class of the enhanced code equal; Postfix disables a milter that mixes them.
type Reply struct {
	code     int
	enhanced string
	text     string
}

// NewReply builds a Reply, refusing a code outside 4xx/5xx, an enhanced code
// that is not of the form C.S.D, classes that differ (RFC 3463 §3.1), or text
// with control characters.
func NewReply(code int, enhanced, text string) (Reply, error) {
	if code < 400 || code > 599 {
		return Reply{}, fmt.Errorf("reply code %d: must be 4xx or 5xx", code)
	}
	parts := strings.Split(enhanced, ".")
	if len(parts) != 3 {
		return Reply{}, fmt.Errorf("enhanced code %q: must be class.subject.detail", enhanced)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || p == "" || (i > 0 && len(p) > 3) {
			return Reply{}, fmt.Errorf("enhanced code %q: part %q is not a number of at most 3 digits", enhanced, p)
		}
	}
	if parts[0] != strconv.Itoa(code/100) {
		return Reply{}, fmt.Errorf("reply %d %s: class of code and enhanced code differ", code, enhanced)
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f {
			return Reply{}, fmt.Errorf("reply text %q: control characters are not allowed", text)
		}
	}
	return Reply{code: code, enhanced: enhanced, text: text}, nil
}

// MustReply is NewReply for replies fixed in the source; it panics on a
// programming error.
func MustReply(code int, enhanced, text string) Reply {
	r, err := NewReply(code, enhanced, text)
	if err != nil {
		panic(err)
	}
	return r
}

// Code returns the three-digit SMTP reply code, or 0 for the zero Reply.
func (r Reply) Code() int { return r.code }

// Enhanced returns the enhanced status code, e.g. "5.7.1".
func (r Reply) Enhanced() string { return r.enhanced }

// Text returns the client-facing text.
func (r Reply) Text() string { return r.text }

// IsZero reports whether r is the zero Reply (no reply chosen).
func (r Reply) IsZero() bool { return r.code == 0 }

// Temporary reports whether r is a 4xx reply.
func (r Reply) Temporary() bool { return r.code/100 == 4 }

// WithText returns a copy of r with another text; the codes stay.
func (r Reply) WithText(text string) Reply {
	n, err := NewReply(r.code, r.enhanced, text)
	if err != nil {
		return r
	}
	return n
}

// WithRef returns r with the reference id appended to the text, the form
// in which a customer quotes it back to the postmaster.
func (r Reply) WithRef(ref string) Reply {
	if ref == "" || r.IsZero() {
		return r
	}
	return r.WithText(strings.TrimSpace(r.text + " (ref " + ref + ")"))
}

// String renders the reply as the client sees it: "550 5.7.1 text".
func (r Reply) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d %s %s", r.code, r.enhanced, r.text)
}

// Common replies. Each cites the RFC that gives its enhanced code.
var (
	// ReplyPolicyReject: RFC 3463 §3.8, X.7.1 delivery not authorized.
	ReplyPolicyReject = MustReply(550, "5.7.1", "Message refused by policy")
	// ReplyPolicyDefer is the temporary form of ReplyPolicyReject.
	ReplyPolicyDefer = MustReply(451, "4.7.1", "Message deferred by policy, try again later")
	// ReplyRelayDenied: RFC 3463 §3.8, X.7.1, for clients that are no customer.
	ReplyRelayDenied = MustReply(550, "5.7.1", "Relay access denied: client is not an identified customer")
	// ReplyTempFailure: RFC 3463 §3.4, X.3.0 other or undefined mail system status.
	ReplyTempFailure = MustReply(451, "4.3.0", "Temporary local problem, try again later")
	// ReplyDirectoryFailure: RFC 3463 §3.5, X.4.3 directory server failure (DNS).
	ReplyDirectoryFailure = MustReply(451, "4.4.3", "Temporary DNS failure, try again later")
)
