package headers

import (
	"strings"
	"testing"
)

func TestLowerIsMatchesToLower(t *testing.T) {
	names := []string{"Date", "date", "DATE ", "Dat", "Datee", "ſubject", "Subject", "SUBJECT", "\u212aey", "Key", "Fröm", "From", "Reply-To", "reply-to", "\xff", ""}
	fields := []string{"Date", "From", "Subject", "Key", "Reply-To"}
	for _, n := range names {
		for _, f := range fields {
			ln, lf := strings.ToLower(n), strings.ToLower(f)
			if got, want := lowerIs(n, f), ln == lf; got != want {
				t.Errorf("lowerIs(%q, %q) = %v, want %v", n, f, got, want)
			}
		}
	}
}
