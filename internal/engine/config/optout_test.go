package config

import (
	"strings"
	"testing"
)

func TestOptOutConfig(t *testing.T) {
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"defaults", cust, ""},
		{"full", "optout:\n  unsubscribe: {base_url: https://u.example/u/, token_ttl: 720h}\n  complaints: {warn: 0.002, act: 0.005}\nbulk: {unsubscribe: add}\n" + cust + "    unsubscribe: require\n    fingerprint_recipients: -1\n", ""},
		{"http base", "optout:\n  unsubscribe: {base_url: http://u.example/u/}\n" + cust, "must be an https URL"},
		{"base without /u/", "optout:\n  unsubscribe: {base_url: https://u.example/x}\n" + cust, "must end in /u/"},
		{"bad listen", "optout:\n  unsubscribe: {listen: nowhere}\n" + cust, "want HOST:PORT or off"},
		{"act below warn", "optout:\n  complaints: {warn: 0.01, act: 0.005}\n" + cust, "below warn"},
		{"rate above 1", "optout:\n  complaints: {act: 3}\n" + cust, "between 0 and 1"},
		{"add without base", "bulk: {unsubscribe: add}\n" + cust, "add needs optout.unsubscribe.base_url"},
		{"customer add without base", cust + "    unsubscribe: add\n", "customers[0].unsubscribe: add needs"},
		{"customer bad mode", cust + "    unsubscribe: maybe\n", "want require or add"},
		{"sender id with colon", "optout:\n  feedback: {sender_id: \"a:b\"}\n" + cust, "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "t.yaml", Options{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.OptOut.Unsubscribe.Listen != DefaultUnsubscribeListen || cfg.OptOut.Complaints.Act == 0 || cfg.Bulk.FingerprintWindow == 0 {
					t.Fatalf("defaults not applied: %+v %+v", cfg.OptOut, cfg.Bulk)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
