package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAuthAndDNSConfig(t *testing.T) {
	dir := t.TempDir()
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	key := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.pem")
	if err := os.WriteFile(loose, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)
	cust := func(extra string) string {
		return "customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n" + extra
	}
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // "line: text"
	}{
		{"defaults", cust(""), nil},
		{"full", `dns: {servers: [192.0.2.53, "[2001:db8::53]:5353", "127.0.0.1:5300"], timeout: 500ms, max_ttl: 10m, negative_ttl: 1m, cache_size: 100}
auth: {dkim: {max_signatures: 3}, dmarc: {require_alignment: true}, signing: {headers: [From, Subject], oversign: [From, Subject], expiration: 168h}}
` + cust("    require_alignment: false\n    dkim:\n      - {domain: acme.example, selector: s2026.gw, key_file: "+key+"}\n"), nil},
		{"bad server", "dns: {servers: [dns.example.com]}\n" + cust(""), []string{"1: dns.servers[0]: bad DNS server"}},
		{"timeout not below decision timeout", "milter: {decision_timeout: 1s}\ndns: {timeout: 1s}\n" + cust(""), []string{"2: dns.timeout: 1s must be shorter than milter.decision_timeout"}},
		{"negative values", "dns: {max_ttl: -1s, cache_size: -3}\n" + cust(""), []string{"1: dns.max_ttl: must not be negative", "1: dns.cache_size: must not be negative"}},
		{"signing without From", "auth:\n  signing:\n    headers: [Subject, Received]\n" + cust(""), []string{"3: auth.signing.headers: must include From", "3: auth.signing.headers[1]: Received must not be signed"}},
		{"short expiration", "auth:\n  signing:\n    expiration: 10m\n" + cust(""), []string{"3: auth.signing.expiration: 10m0s is too short"}},
		{"bad keys", cust(`    dkim:
      - {domain: "*.acme.example", selector: "bad selector", key_file: ` + key + `}
      - {domain: acme.example, selector: s1, key_file: ` + filepath.Join(dir, "missing.pem") + `}
      - {domain: acme.example, selector: s2, key_file: ` + loose + `}
      - {domain: other.example, selector: s3}
`), []string{
			"6: customers[0].dkim[0].domain: a signing domain is one domain",
			"6: customers[0].dkim[0].selector: bad selector",
			"7: customers[0].dkim[1].key_file: key file " + filepath.Join(dir, "missing.pem") + " does not exist",
			"8: customers[0].dkim[2].domain: domain \"acme.example\" already has a key",
			"8: customers[0].dkim[2].key_file: key file " + loose + " is readable by group or others (mode 0644)",
			"9: customers[0].dkim[3].key_file: key_file missing",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "a.yaml", Options{})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.DNS.Timeout == 0 || cfg.DNS.CacheSize == 0 || cfg.Auth.DKIM.MaxSignatures == 0 || len(cfg.Auth.Signing.Headers) == 0 {
					t.Fatalf("defaults missing: %+v %+v", cfg.DNS, cfg.Auth)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), "a.yaml:"+w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestDNSDefaults(t *testing.T) {
	cfg, err := Parse([]byte("customers: [{id: a, networks: [192.0.2.1], domains: [a.example]}]"), "a.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.DNS
	if d.Timeout != time.Second || d.MaxTTL != time.Hour || d.NegativeTTL != 5*time.Minute || d.CacheSize != DefaultDNSCacheSize || len(d.Servers) != 0 {
		t.Fatalf("dns defaults %+v", d)
	}
	if got := cfg.Auth.Signing.Oversign; len(got) != 1 || got[0] != "From" {
		t.Fatalf("oversign default %v", got)
	}
}
