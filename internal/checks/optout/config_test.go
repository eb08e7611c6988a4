package optout

import (
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
)

// sectionOpts parses with this package's sections, as the gateway does.
var sectionOpts = config.Options{Sections: []config.SectionSpec{Section, BulkSection}, Customers: []config.CustomerSection{CustomerSection}}

func TestOptOutConfig(t *testing.T) {
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"defaults", cust, ""},
		{"full", "optout:\n  unsubscribe: {base_url: https://u.example/u/, token_ttl: 720h}\n  complaints: {warn: 0.002, act: 0.005}\nbulk: {unsubscribe: add}\n" + cust + "    unsubscribe: require\n    fingerprint_recipients: -1\n", ""},
		{"http base", "optout:\n  unsubscribe: {base_url: http://u.example/u/}\n" + cust, "optout.unsubscribe.base_url: must be an https URL"},
		{"base without /u/", "optout:\n  unsubscribe: {base_url: https://u.example/x}\n" + cust, "must end in /u/"},
		{"bad listen", "optout:\n  unsubscribe: {listen: nowhere}\n" + cust, "want HOST:PORT or off"},
		{"act below warn", "optout:\n  complaints: {warn: 0.01, act: 0.005}\n" + cust, "below warn"},
		{"rate above 1", "optout:\n  complaints: {act: 3}\n" + cust, "between 0 and 1"},
		{"add without base", "bulk: {unsubscribe: add}\n" + cust, "add needs optout.unsubscribe.base_url"},
		{"customer add without base", cust + "    unsubscribe: add\n", "customers[0].unsubscribe: add needs"},
		{"customer bad mode", cust + "    unsubscribe: maybe\n", "want require or add"},
		{"customer bad fingerprint", cust + "    fingerprint_recipients: -2\n", "customers[0].fingerprint_recipients: want a count, or -1"},
		{"sender id with colon", "optout:\n  feedback: {sender_id: \"a:b\"}\n" + cust, "must not contain"},
		{"bad fingerprint", "bulk: {fingerprint_recipients: -5}\n" + cust, "bulk.fingerprint_recipients: want a count"},
		{"negative fingerprint window", "bulk: {fingerprint_window: -1h}\n" + cust, "bulk.fingerprint_window: must be positive"},
		{"unknown key", "optout:\n  keep_plian: true\n" + cust, `optout.keep_plian: unknown key "keep_plian" (did you mean keep_plain?)`},
		{"wrong type", "bulk:\n  fingerprint_window: soon\n" + cust, "t.yaml:2: bulk.fingerprint_window"},
		{"complaint window too short", "optout:\n  complaints: {window: 30m}\n" + cust, "optout.complaints.window: must be at least 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tt.yaml), "t.yaml", sectionOpts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				o, err := ConfigOf(cfg)
				if err != nil {
					t.Fatal(err)
				}
				b, err := BulkConfigOf(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if o.Unsubscribe.Listen != DefaultUnsubscribeListen || o.Complaints.Act == 0 || b.FingerprintWindow == 0 {
					t.Fatalf("defaults not applied: %+v %+v", o, b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestConfigLines checks that the sections' errors carry the line of the
// key they are about.
func TestConfigLines(t *testing.T) {
	const yaml = "optout:\n  unsubscribe:\n    listen: nowhere\nbulk:\n  unsubscribe: add\ncustomers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n    unsubscribe: sometimes\n"
	_, err := config.Parse([]byte(yaml), "t.yaml", sectionOpts)
	if err == nil {
		t.Fatal("config accepted")
	}
	for _, want := range []string{
		"t.yaml:3: optout.unsubscribe.listen: want HOST:PORT or off",
		"t.yaml:5: bulk.unsubscribe: add needs optout.unsubscribe.base_url",
		`t.yaml:10: customers[0].unsubscribe: want require or add, got "sometimes"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors %q lack %q", err, want)
		}
	}
}

// TestConfigOfWithoutSections decodes the sections on demand for a config
// parsed without them (tools and tests), with the same defaults and
// settings.
func TestConfigOfWithoutSections(t *testing.T) {
	const yaml = "optout:\n  fold_subaddress: false\n  feedback: {feedback_id: false}\n  escalation: {threshold: 3}\nbulk: {fingerprint_recipients: 50}\ncustomers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n    fingerprint_recipients: -1\n  - id: b\n    networks: [192.0.2.2]\n    domains: [b.example]\n"
	cfg, err := config.Parse([]byte(yaml), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := SettingsFromConfig(cfg, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if s.FoldSubaddress || s.FeedbackID || s.Threshold != 3 || s.Warn != DefaultComplaintWarn || s.FingerprintWindow != DefaultFingerprintWindow {
		t.Errorf("settings %+v", s)
	}
	if s.Bulk.FingerprintRecipients != 50 || s.BulkFor("a").FingerprintRecipients != -1 || s.BulkFor("b").FingerprintRecipients != 50 || s.Bulk.AddUnsubscribe {
		t.Errorf("bulk settings %+v %+v", s.Bulk, s.Customers)
	}
}

// TestConfigSnippet checks that configs/snippets/optout.yaml is valid and
// states the defaults (bar its example base_url).
func TestConfigSnippet(t *testing.T) {
	cfg, err := config.Load("../../../configs/snippets/optout.yaml", sectionOpts)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := BulkConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, db := DefaultConfig(), DefaultBulkConfig()
	if o.KeepPlain || o.CaseSensitiveLocal || !o.FoldsSubaddress() || o.FoldSubaddress == nil ||
		o.Unsubscribe.Listen != d.Unsubscribe.Listen || o.Unsubscribe.TokenTTL != 0 || o.Feedback.SenderID != d.Feedback.SenderID ||
		!o.AddsFeedbackID() || o.Escalation != d.Escalation || o.Complaints != d.Complaints || *b != *db {
		t.Errorf("snippet differs from the defaults: %+v %+v", o, b)
	}
}

// TestCheckCustomerLiveDirectory checks that a customer of the live
// directory (config.WithCustomers, not the file) gets the same validation
// of its bulk keys as one in the file.
func TestCheckCustomerLiveDirectory(t *testing.T) {
	base, err := config.Parse([]byte("customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"), "t.yaml", sectionOpts)
	if err != nil {
		t.Fatal(err)
	}
	neg := -3
	tests := []struct {
		name string
		c    config.Customer
		want string
	}{
		{"add without base", config.Customer{ID: "b", CustomerOptOut: config.CustomerOptOut{Unsubscribe: "add"}}, "customers[0].unsubscribe: add needs optout.unsubscribe.base_url"},
		{"bad mode", config.Customer{ID: "b", CustomerOptOut: config.CustomerOptOut{Unsubscribe: "never"}}, `customers[0].unsubscribe: want require or add, got "never"`},
		{"bad fingerprint", config.Customer{ID: "b", CustomerOptOut: config.CustomerOptOut{FingerprintRecipients: &neg}}, "customers[0].fingerprint_recipients: want a count"},
		{"valid", config.Customer{ID: "b", CustomerOptOut: config.CustomerOptOut{Unsubscribe: "require"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			c.Networks, c.Domains = []string{"192.0.2.2"}, []string{"b.example"}
			_, err := base.WithCustomers([]config.Customer{c}, sectionOpts)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
