// Package mailaddr normalises mail addresses and domains the same way
// everywhere in the gateway: domains lower-case, without a trailing dot, as
// A-labels (RFC 5890), so that a U-label and its A-label compare equal.
package mailaddr

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// NormalizeDomain returns domain lower-cased, without a trailing dot, in its
// A-label form. An empty domain stays empty.
func NormalizeDomain(domain string) (string, error) {
	d := strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if d == "" {
		return "", nil
	}
	if !utf8.ValidString(d) {
		// The IDNA mapping would turn bad bytes into U+FFFD and encode
		// that: a domain no resolver knows (RFC 6531 §3.3: UTF-8 only).
		return "", fmt.Errorf("domain %q: not valid UTF-8", domain)
	}
	if isASCII(d) {
		d = strings.ToLower(d)
		if !strings.Contains(d, "xn--") {
			return d, validLDH(d)
		}
	}
	a, err := idnaProfile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %v", domain, err)
	}
	// The A-label form must itself be a host name: "xn--" alone decodes
	// to an empty label.
	a = strings.ToLower(a)
	if err := validLDH(a); err != nil {
		return "", fmt.Errorf("domain %q: %v", domain, err)
	}
	return a, nil
}

// UnicodeDomain returns the U-label form of a normalised domain, for display.
func UnicodeDomain(domain string) string {
	u, err := idna.Display.ToUnicode(domain)
	if err != nil {
		return domain
	}
	return u
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func validLDH(d string) error {
	if len(d) > 253 {
		return fmt.Errorf("domain %q: longer than 253 octets", d)
	}
	// Label by label, without a slice of them (this runs for every address).
	for rest := d; ; {
		label, tail, more := strings.Cut(rest, ".")
		if label == "" || len(label) > 63 {
			return fmt.Errorf("domain %q: empty or over-long label", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("domain %q: character %q not allowed", d, c)
			}
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// Address is an envelope or header address split into local part and
// normalised domain. The zero Address with Null set is the null sender <>.
type Address struct {
	Local  string
	Domain string
	Null   bool
}

// ErrNoDomain is returned for an address without "@domain".
var ErrNoDomain = errors.New("address has no domain")

// Parse splits an envelope address (angle brackets allowed) into local part
// and normalised domain. "<>" and "" give the null address.
func Parse(s string) (Address, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return Address{Null: true}, nil
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Address{Local: s}, ErrNoDomain
	}
	local := CanonicalLocal(s[:at])
	d, err := NormalizeDomain(s[at+1:])
	if err != nil {
		return Address{Local: local}, err
	}
	if d == "" {
		// "local@." names the root: no domain (RFC 5321 §4.1.2).
		return Address{Local: local}, ErrNoDomain
	}
	return Address{Local: local, Domain: d}, nil
}

// CanonicalLocal returns a local part in its one canonical spelling. RFC
// 5321 §4.1.2 makes a Quoted-string local part and its Dot-string spelling
// the same mailbox when the quoting is not needed ("x" and x; "a\b" and
// ab), and asks senders to use the form with the least quoting; the
// receiving MTA (Postfix included) delivers both to one mailbox. So a
// quoted local part is unquoted (quoted-pairs undone) and, when the result
// is a valid Dot-string, written without quotes; otherwise it is quoted
// again with only '"' and '\' escaped. Anything that is not a quoted
// string is returned as it is.
func CanonicalLocal(local string) string {
	if len(local) < 2 || local[0] != '"' || local[len(local)-1] != '"' {
		return local
	}
	var b strings.Builder
	in := local[1 : len(local)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == '\\' {
			if i+1 == len(in) {
				return local // a dangling backslash: not a quoted string
			}
			i++
			c = in[i]
		} else if c == '"' {
			return local // an unescaped quote inside: not one quoted string
		}
		b.WriteByte(c)
	}
	u := b.String()
	if isDotString(u) {
		return u
	}
	var q strings.Builder
	q.WriteByte('"')
	for i := 0; i < len(u); i++ {
		if u[i] == '"' || u[i] == '\\' {
			q.WriteByte('\\')
		}
		q.WriteByte(u[i])
	}
	q.WriteByte('"')
	return q.String()
}

// isDotString reports whether s is an RFC 5321 §4.1.2 Dot-string: atoms of
// atext (RFC 5322 §3.2.3; UTF-8 allowed by RFC 6531 §3.3) joined by single
// dots, no leading or trailing dot.
func isDotString(s string) bool {
	if s == "" {
		return false
	}
	for _, atom := range strings.Split(s, ".") {
		if atom == "" {
			return false
		}
		for i := 0; i < len(atom); i++ {
			c := atom[i]
			if c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
				continue
			}
			if !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
				return false
			}
		}
	}
	return true
}

// String returns local@domain, or "" for the null address.
func (a Address) String() string {
	if a.Null {
		return ""
	}
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Canonical returns the address in the one form used for counting,
// suppression, hashing and display: the local part in its canonical
// spelling (CanonicalLocal: unquoted when quoting is not needed), lower-
// cased (unless caseSensitive), and with "+tag" sub-addresses folded away
// when foldSubaddress is set; the domain as Parse normalised it (lower-case
// A-label without trailing dot).
func (a Address) Canonical(caseSensitive, foldSubaddress bool) string {
	local := CanonicalLocal(a.Local)
	if foldSubaddress && !strings.HasPrefix(local, "\"") {
		if i := strings.IndexByte(local, '+'); i > 0 {
			local = local[:i]
		}
	}
	if !caseSensitive {
		local = strings.ToLower(local)
	}
	return local + "@" + a.Domain
}

// Pattern is a domain pattern: an exact domain, or "*.example.com" which
// matches example.com's subdomains (and, by convention here, not
// example.com itself, which must be listed on its own).
type Pattern struct {
	domain   string
	wildcard bool
}

// ParsePattern normalises a domain pattern.
func ParsePattern(s string) (Pattern, error) {
	wild := strings.HasPrefix(s, "*.")
	if wild {
		s = s[2:]
	}
	d, err := NormalizeDomain(s)
	if err != nil {
		return Pattern{}, err
	}
	if d == "" {
		return Pattern{}, errors.New("empty domain pattern")
	}
	return Pattern{domain: d, wildcard: wild}, nil
}

// Match reports whether a normalised domain matches the pattern.
func (p Pattern) Match(domain string) bool {
	if p.wildcard {
		return strings.HasSuffix(domain, "."+p.domain)
	}
	return domain == p.domain
}

// String returns the pattern as configured (A-label form).
func (p Pattern) String() string {
	if p.wildcard {
		return "*." + p.domain
	}
	return p.domain
}
