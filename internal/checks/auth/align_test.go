package auth

import "testing"

func TestOrgDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"mail.news.Example.COM.", "example.com"},
		{"example.co.uk", "example.co.uk"},
		{"a.b.example.co.uk", "example.co.uk"},
		{"co.uk", "co.uk"},                     // a public suffix is its own
		{"com", "com"},                         // single label
		{"alice.github.io", "alice.github.io"}, // private suffix section
		{"www.alice.github.io", "alice.github.io"},
		{"bücher.example", "xn--bcher-kva.example"}, // U-label to A-label
		{"x.xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"", ""},
		{"bad..domain", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := OrgDomain(tt.in); got != tt.want {
				t.Fatalf("OrgDomain(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestAligned(t *testing.T) {
	tests := []struct {
		name       string
		mode       Mode
		auth, from string
		want       bool
	}{
		{"same domain relaxed", Relaxed, "example.com", "example.com", true},
		{"same domain strict", Strict, "example.com", "example.com", true},
		{"case and trailing dot", Strict, "EXAMPLE.com.", "example.COM", true},
		{"auth subdomain relaxed", Relaxed, "mail.example.com", "example.com", true},
		{"auth subdomain strict", Strict, "mail.example.com", "example.com", false},
		{"from subdomain relaxed", Relaxed, "example.com", "news.example.com", true},
		{"from subdomain strict", Strict, "example.com", "news.example.com", false},
		{"sibling subdomains relaxed", Relaxed, "a.example.com", "b.example.com", true},
		{"other domain", Relaxed, "example.net", "example.com", false},
		{"suffix trick", Relaxed, "badexample.com", "example.com", false},
		{"co.uk siblings are different orgs", Relaxed, "other.co.uk", "example.co.uk", false},
		{"co.uk subdomain", Relaxed, "mail.example.co.uk", "example.co.uk", true},
		{"public suffix itself never aligns with a child", Relaxed, "co.uk", "example.co.uk", false},
		{"private suffix: github.io users are separate", Relaxed, "bob.github.io", "alice.github.io", false},
		{"private suffix: same user", Relaxed, "mail.alice.github.io", "alice.github.io", true},
		{"U-label vs A-label strict", Strict, "bücher.example", "xn--bcher-kva.example", true},
		{"empty auth", Relaxed, "", "example.com", false},
		{"empty from", Relaxed, "example.com", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Aligned(tt.mode, tt.auth, tt.from); got != tt.want {
				t.Fatalf("Aligned(%s, %q, %q) = %v, want %v", tt.mode, tt.auth, tt.from, got, tt.want)
			}
		})
	}
}
