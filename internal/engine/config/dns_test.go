package config

import (
	"strings"
	"testing"
	"time"
)

func TestDNSConfig(t *testing.T) {
	cust := "customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // "line: text"
	}{
		{"defaults", cust, nil},
		{"full", `dns: {servers: [192.0.2.53, "[2001:db8::53]:5353", "127.0.0.1:5300"], timeout: 500ms, max_ttl: 10m, negative_ttl: 1m, cache_size: 100}
` + cust, nil},
		{"bad server", "dns: {servers: [dns.example.com]}\n" + cust, []string{"1: dns.servers[0]: bad DNS server"}},
		{"timeout not below decision timeout", "milter: {decision_timeout: 1s}\ndns: {timeout: 1s}\n" + cust, []string{"2: dns.timeout: 1s must be shorter than milter.decision_timeout"}},
		{"negative values", "dns: {max_ttl: -1s, cache_size: -3}\n" + cust, []string{"1: dns.max_ttl: must not be negative", "1: dns.cache_size: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "a.yaml", Options{})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if cfg.DNS.Timeout == 0 || cfg.DNS.CacheSize == 0 {
					t.Fatalf("defaults missing: %+v", cfg.DNS)
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
}
