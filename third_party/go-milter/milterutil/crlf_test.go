package milterutil

import (
	"testing"

	"golang.org/x/text/transform"
)

// TestCrLfToLfMatchesTransformChain holds the aupguard patch's CrLfToLf
// and AppendCrLfToLf to the transform chain upstream uses, for every
// string of up to 7 bytes over the bytes that matter.
func TestCrLfToLfMatchesTransformChain(t *testing.T) {
	alphabet := []byte{'a', '\r', '\n', 0, ' '}
	var walk func(s []byte)
	walk = func(s []byte) {
		want, _, _ := transform.String(transform.Chain(&NulToSpTransformer{}, &CrLfToLfTransformer{}), string(s))
		if got := CrLfToLf(string(s)); got != want {
			t.Fatalf("CrLfToLf(%q) = %q, want %q", s, got, want)
		}
		if got := string(AppendCrLfToLf([]byte("x"), string(s))); got != "x"+want {
			t.Fatalf("AppendCrLfToLf(%q) = %q, want %q", s, got, "x"+want)
		}
		if len(s) == 7 {
			return
		}
		for _, c := range alphabet {
			walk(append(s, c))
		}
	}
	walk(nil)
	if n := testing.AllocsPerRun(10, func() { _ = CrLfToLf(" plain value, no line end") }); n != 0 {
		t.Errorf("CrLfToLf of a value without CR or NUL allocates %v times", n)
	}
}
