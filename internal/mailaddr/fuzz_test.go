package mailaddr

import (
	"strings"
	"testing"
)

// FuzzParse feeds envelope addresses, as clients write them in MAIL FROM
// and RCPT TO, to Parse: it never panics, an address it accepts has a
// non-empty local part and a domain already in normal form (normalising
// it again changes nothing), and its String form parses to the same
// address.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"<alice@example.com>", "<>", "", "bob@EXAMPLE.org.", "x@bücher.example", "no-domain", "@example.com", "a@b@c.example", " <c@[192.0.2.1]> ", "d@xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		if a.Null {
			if a.Local != "" || a.Domain != "" {
				t.Fatalf("null address with parts: %+v", a)
			}
			return
		}
		if a.Local == "" || a.Domain == "" {
			t.Fatalf("Parse(%q) = %+v without error", s, a)
		}
		d, err := NormalizeDomain(a.Domain)
		if err != nil || d != a.Domain {
			t.Fatalf("domain %q not in normal form: %q, %v", a.Domain, d, err)
		}
		if strings.ContainsAny(a.Local, "<>") || strings.TrimSpace(a.Local) != a.Local {
			return // String cannot round-trip brackets or edge spaces the parser tolerates
		}
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("Parse(%q) = %+v, %v; want %+v", a.String(), b, err, a)
		}
	})
}
