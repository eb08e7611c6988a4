package customer

import (
	"net/netip"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
)

func TestIdentify(t *testing.T) {
	cfg, err := config.Parse([]byte(`
customers:
  - id: acme
    logins: [acme, "acme-*"]
    networks: [192.0.2.0/24]
    domains: [acme.example, "*.acme.example"]
  - id: reseller
    networks: [198.51.100.0/24]
    domains: [reseller.example]
  - id: sub
    force: true # inside the reseller's /24 by design: the longest prefix wins
    networks: [198.51.100.7]
    logins: ["ops@sub.example"]
    domains: [sub.example]
    mode: monitor
`), "c.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		login  string
		client string
		want   string
		by     string
	}{
		{"exact login", "acme", "203.0.113.1", "acme", ByLogin},
		{"glob login", "acme-web", "203.0.113.1", "acme", ByLogin},
		{"login beats network", "ops@sub.example", "192.0.2.9", "sub", ByLogin},
		{"unknown login falls back to network", "stranger", "192.0.2.9", "acme", ByNetwork},
		{"network", "", "192.0.2.200", "acme", ByNetwork},
		{"longest prefix wins", "", "198.51.100.7", "sub", ByNetwork},
		{"outer network", "", "198.51.100.8", "reseller", ByNetwork},
		{"v4-mapped v6", "", "::ffff:192.0.2.1", "acme", ByNetwork},
		{"unidentified", "", "203.0.113.1", "", ""},
		{"unknown login, unknown network", "stranger", "203.0.113.1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, by := d.Identify(tt.login, netip.MustParseAddr(tt.client))
			got := ""
			if c != nil {
				got = c.ID
			}
			if got != tt.want || by != tt.by {
				t.Fatalf("got %q by %q, want %q by %q", got, by, tt.want, tt.by)
			}
		})
	}
	sub, _ := d.ByID("sub")
	if sub.Mode.String() != "monitor" {
		t.Fatalf("mode %v", sub.Mode)
	}
	acme, _ := d.ByID("acme")
	for dom, want := range map[string]bool{"acme.example": true, "ACME.example.": true, "mail.acme.example": true, "acme.example.evil": false, "notacme.example": false} {
		if acme.OwnsDomain(dom) != want {
			t.Errorf("OwnsDomain(%q) = %v", dom, !want)
		}
	}
}
