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
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("domain %q: empty or over-long label", d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("domain %q: character %q not allowed", d, c)
			}
		}
	}
	return nil
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
	d, err := NormalizeDomain(s[at+1:])
	if err != nil {
		return Address{Local: s[:at]}, err
	}
	if d == "" {
		// "local@." names the root: no domain (RFC 5321 §4.1.2).
		return Address{Local: s[:at]}, ErrNoDomain
	}
	return Address{Local: s[:at], Domain: d}, nil
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

// Canonical returns the address in the form used for counting and
// suppression: local part lower-cased (unless caseSensitive), and with
// "+tag" sub-addresses folded away when foldSubaddress is set.
func (a Address) Canonical(caseSensitive, foldSubaddress bool) string {
	local := a.Local
	if foldSubaddress {
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
