package mailaddr

import (
	"fmt"
	"unicode/utf8"
)

// CheckText refuses text no identifier, address or name of the directory
// may hold: invalid UTF-8 and control characters (C0, DEL, C1). The
// error names the first offender and its byte offset.
func CheckText(s string) error {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("invalid UTF-8 at byte %d", i)
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return fmt.Errorf("control character U+%04X at byte %d", r, i)
		}
		i += size
	}
	return nil
}

// Domain is the pattern's domain (without "*.").
func (p Pattern) Domain() string { return p.domain }

// Wildcard reports whether the pattern is "*.domain" (its subdomains).
func (p Pattern) Wildcard() bool { return p.wildcard }
