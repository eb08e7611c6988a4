package headers

import (
	"net/netip"
	"strings"
)

// Received is what a Received: field says about the hop that added it
// (RFC 5321 §4.4, Time-stamp-line; RFC 5322 §3.6.7).
type Received struct {
	// From is the name the sending host gave (HELO) or the "from" domain.
	From string
	// By is the name of the host that claims to have added the field.
	By string
	// ByAddrs are the IP addresses named in the "by" clause, as literals
	// or in its comment (e.g. "by mx.example ([192.0.2.1])").
	ByAddrs []netip.Addr
	// ID is the "id" clause (the MTA's queue id).
	ID string
}

// ParseReceived extracts the from, by and id clauses of a Received:
// value. It is tolerant: MTAs write many dialects (RFC 5321 §4.4 asks
// receivers not to reject a message for a malformed Received:), so a
// clause it cannot find is left empty. It never panics and is linear.
func ParseReceived(v string) Received {
	var r Received
	// The date follows the last ";" (RFC 5322 §3.6.7); clauses come before.
	if i := strings.LastIndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	words := receivedWords(v)
	clause := ""
	for _, w := range words {
		lw := strings.ToLower(w.text)
		switch lw {
		case "from", "by", "via", "with", "id", "for":
			if !w.inComment {
				clause = lw
				continue
			}
		}
		if w.inComment {
			if clause == "by" {
				r.ByAddrs = appendAddrs(r.ByAddrs, w.text)
			}
			continue
		}
		switch clause {
		case "from":
			if r.From == "" {
				r.From = w.text
			}
		case "by":
			if r.By == "" {
				r.By = w.text
			}
			r.ByAddrs = appendAddrs(r.ByAddrs, w.text)
		case "id":
			if r.ID == "" {
				r.ID = strings.Trim(w.text, "<>")
			}
		}
	}
	return r
}

type rword struct {
	text      string
	inComment bool
}

// receivedWords splits a Received: value into white-space separated words,
// marking those inside comments (which nest, RFC 5322 §3.2.2).
func receivedWords(v string) []rword {
	var out []rword
	depth := 0
	start := -1
	flush := func(end int) {
		if start >= 0 && end > start {
			out = append(out, rword{text: v[start:end], inComment: depth > 0})
		}
		start = -1
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '(':
			flush(i)
			depth++
		case c == ')':
			flush(i)
			if depth > 0 {
				depth--
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			flush(i)
		default:
			if start < 0 {
				start = i
			}
		}
	}
	flush(len(v))
	return out
}

// appendAddrs adds the IP address a word names: "[192.0.2.1]",
// "[IPv6:2001:db8::1]", "192.0.2.1" or "helo=[...]".
func appendAddrs(list []netip.Addr, w string) []netip.Addr {
	if i := strings.IndexByte(w, '='); i >= 0 {
		w = w[i+1:]
	}
	w = strings.Trim(w, "[]<>,;")
	if len(w) > 5 && strings.EqualFold(w[:5], "ipv6:") {
		w = w[5:]
	}
	if a, err := netip.ParseAddr(w); err == nil {
		return append(list, a.Unmap())
	}
	return list
}

// AuthServID returns the authserv-id of an Authentication-Results value
// (RFC 8601 §2.2: the first item, before ";" and any version) or of an
// ARC-Authentication-Results value (RFC 8617 §4.1.1: after "i=N;").
// It returns "" when there is none.
func AuthServID(v string, arc bool) string {
	s := stripComments(v)
	if arc {
		s = strings.TrimSpace(s)
		if len(s) >= 2 && (s[0] == 'i' || s[0] == 'I') {
			rest := strings.TrimSpace(s[1:])
			if strings.HasPrefix(rest, "=") {
				if j := strings.IndexByte(rest, ';'); j >= 0 {
					s = rest[j+1:]
				} else {
					return ""
				}
			}
		}
	}
	if j := strings.IndexByte(s, ';'); j >= 0 {
		s = s[:j]
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return strings.Trim(f[0], "\"")
}

// stripComments removes (nested) comments from a structured value.
func stripComments(v string) string {
	if !strings.Contains(v, "(") {
		return v
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
			b.WriteByte(' ')
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// OriginAddrs parses the value of an origin header such as
// X-Originating-IP ("[192.0.2.1]", "192.0.2.1, 198.51.100.7"). It returns
// the addresses and the words that are no address.
func OriginAddrs(v string) (addrs []netip.Addr, bad []string) {
	f := strings.FieldsFunc(stripComments(v), func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
	for _, w := range f {
		w = strings.Trim(w, "[]")
		if len(w) > 5 && strings.EqualFold(w[:5], "ipv6:") {
			w = w[5:]
		}
		if a, err := netip.ParseAddr(w); err == nil {
			addrs = append(addrs, a.Unmap())
			continue
		}
		if ap, err := netip.ParseAddrPort(w); err == nil {
			addrs = append(addrs, ap.Addr().Unmap())
			continue
		}
		bad = append(bad, w)
	}
	return addrs, bad
}
