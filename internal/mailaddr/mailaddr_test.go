package mailaddr

import (
	"strings"
	"testing"
)

func TestNormalizeDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Example.COM.", "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeDomain(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	long := strings.Repeat("a", 63)
	if _, err := NormalizeDomain(long + "." + long + ".example"); err != nil {
		t.Errorf("63-octet labels refused: %v", err)
	}
	for _, bad := range []string{"a b.example", "a..example", "exa\x00mple.com", ".example", "..", long + "a.example", "example." + long + "a",
		strings.Repeat("abcdefghi.", 26) + "example"} {
		if _, err := NormalizeDomain(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseAndCanonical(t *testing.T) {
	a, err := Parse("<John.Doe+News@Bücher.Example>")
	if err != nil {
		t.Fatal(err)
	}
	if a.Domain != "xn--bcher-kva.example" || a.Local != "John.Doe+News" {
		t.Fatalf("%+v", a)
	}
	if got := a.Canonical(false, true); got != "john.doe@xn--bcher-kva.example" {
		t.Fatalf("canonical %q", got)
	}
	if got := a.Canonical(true, false); got != "John.Doe+News@xn--bcher-kva.example" {
		t.Fatalf("canonical %q", got)
	}
	if n, err := Parse("<>"); err != nil || !n.Null {
		t.Fatalf("null sender: %+v %v", n, err)
	}
	if _, err := Parse("nodomain"); err != ErrNoDomain {
		t.Fatalf("err %v", err)
	}
}

func TestPattern(t *testing.T) {
	p, _ := ParsePattern("*.Example.com")
	w, _ := ParsePattern("example.com")
	for d, want := range map[string][2]bool{
		"example.com":      {false, true},
		"a.example.com":    {true, false},
		"a.b.example.com":  {true, false},
		"badexample.com":   {false, false},
		"example.com.evil": {false, false},
	} {
		if p.Match(d) != want[0] || w.Match(d) != want[1] {
			t.Errorf("%s: wildcard %v exact %v", d, p.Match(d), w.Match(d))
		}
	}
}

// TestCanonicalForms: every spelling of one mailbox gives one canonical
// form (RFC 5321 §4.1.2 quoting, domain case, trailing dot, U-label).
func TestCanonicalForms(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		fold     bool
	}{
		{in: `<"x"@dest.example>`, want: "x@dest.example"},
		{in: `"X"@DEST.Example.`, want: "x@dest.example"},
		{in: `"x\y"@dest.example`, want: "xy@dest.example"},
		{in: `"first.last"@dest.example`, want: "first.last@dest.example"},
		{in: `"a b"@dest.example`, want: `"a b"@dest.example`},
		{in: `"a\ b"@dest.example`, want: `"a b"@dest.example`},
		{in: `"a..b"@dest.example`, want: `"a..b"@dest.example`},
		{in: `"a\"b"@dest.example`, want: `"a\"b"@dest.example`},
		{in: `x@bücher.example`, want: "x@xn--bcher-kva.example"},
		{in: `"x+tag"@dest.example`, want: "x@dest.example", fold: true},
		{in: `x+tag@dest.example`, want: "x+tag@dest.example"},
		{in: `"a b+c"@dest.example`, want: `"a b+c"@dest.example`, fold: true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			a, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Canonical(false, tt.fold); got != tt.want {
				t.Fatalf("Canonical(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzCanonicalLocal: any input is handled without panic, and the
// canonical spelling is a fixed point (canonicalising twice changes
// nothing), so one mailbox never gets two hashes.
func FuzzCanonicalLocal(f *testing.F) {
	for _, s := range []string{`"x"`, `"a b"`, `"a\"b"`, `"\\"`, `"`, `""`, `"a..b"`, `x+tag`, `"x\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := CanonicalLocal(s)
		if c2 := CanonicalLocal(c); c2 != c {
			t.Fatalf("CanonicalLocal(%q) = %q, then %q", s, c, c2)
		}
	})
}
