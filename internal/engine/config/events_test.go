package config

import (
	"strings"
	"testing"
	"time"
)

func TestEventsAdminReportsConfig(t *testing.T) {
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"defaults", cust, ""},
		{"full", "admin: {listen: 127.0.0.1:9000, token_file: /etc/aupguard/admin.token, dashboard_refresh: 60s, metrics_top_customers: 5}\n" +
			"events: {retention: 720h, aggregate_retention: 8760h, buffer: 1024, daily_cap: 100000, ring: 5000, file: /var/lib/aupguard/events.jsonl}\n" +
			"reports: {top: 5, customer_reports: all, smtp: {host: relay.example, tls: starttls, username: u, password_file: /p, from: postmaster@provider.example}}\n" + cust, ""},
		{"admin bad listen", "admin: {listen: nowhere}\n" + cust, "want HOST:PORT or off"},
		{"admin public without tls", "admin: {listen: 0.0.0.0:8892}\n" + cust, "RFC 6750"},
		{"admin public with tls", "admin: {listen: 0.0.0.0:8892, tls_cert: /c, tls_key: /k}\n" + cust, ""},
		{"admin public plaintext allowed", "admin: {listen: 0.0.0.0:8892, insecure_plaintext: true}\n" + cust, ""},
		{"admin cert without key", "admin: {tls_cert: /c}\n" + cust, "go together"},
		{"admin refresh too fast", "admin: {dashboard_refresh: 1s}\n" + cust, "at least 5s"},
		{"admin negative top", "admin: {metrics_top_customers: -1}\n" + cust, "must not be negative"},
		{"retention too short", "events: {retention: 10m}\n" + cust, "at least 1h"},
		{"aggregates shorter than events", "events: {retention: 720h, aggregate_retention: 24h}\n" + cust, "at least events.retention"},
		{"accepted kept longer than every event", "events: {retention: 72h, accepted_retention: 96h}\n" + cust, "between 1h and events.retention"},
		{"accepted retention too short", "events: {accepted_retention: 30m}\n" + cust, "between 1h and events.retention"},
		{"accepted retention defaults to at most retention", "events: {retention: 48h}\n" + cust, ""},
		{"tiny buffer", "events: {buffer: 2}\n" + cust, "at least 16"},
		{"tiny cap", "events: {daily_cap: 10}\n" + cust, "at least 1000"},
		{"tiny ring", "events: {ring: 10}\n" + cust, "at least 100"},
		{"bad customer reports", "reports: {customer_reports: some}\n" + cust, "want stopped, all or none"},
		{"bad tls", "reports: {smtp: {tls: maybe}}\n" + cust, "want none, opportunistic"},
		{"bad port", "reports: {smtp: {port: 70000}}\n" + cust, "want 1-65535"},
		{"user without password", "reports: {smtp: {username: u}}\n" + cust, "go together"},
		{"auth in clear to remote", "reports: {smtp: {host: relay.example, username: u, password_file: /p}}\n" + cust, "RFC 4954"},
		{"auth in clear to loopback", "reports: {smtp: {host: 127.0.0.1, username: u, password_file: /p}}\n" + cust, ""},
		{"bad from", "reports: {smtp: {from: \"not an address\"}}\n" + cust, "bad address"},
		{"bad postmaster", "provider: {postmaster: \"nope\"}\n" + cust, "provider.postmaster"},
		{"bad abuse contact", cust + "    abuse_contact: \"nope\"\n", "customers[0].abuse_contact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "t.yaml", Options{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Admin.Listen == "" || cfg.Admin.DashboardRange != DefaultDashboardRange || cfg.Events.Retention == 0 ||
					cfg.Events.Buffer == 0 || cfg.Events.AcceptedRetention == 0 || cfg.Events.AcceptedRetention > cfg.Events.Retention || cfg.Reports.SMTP.Port == 0 || cfg.Reports.SMTP.Timeout != DefaultReportSMTPTimeout {
					t.Fatalf("defaults not applied: %+v %+v %+v", cfg.Admin, cfg.Events, cfg.Reports)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestReportsSMTPPortDefault(t *testing.T) {
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	for _, tt := range []struct {
		tls  string
		port int
	}{{"tls", 465}, {"starttls", 25}, {"none", 25}} {
		t.Run(tt.tls, func(t *testing.T) {
			cfg, err := Parse([]byte("reports: {smtp: {tls: "+tt.tls+"}}\n"+cust), "t.yaml", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Reports.SMTP.Port != tt.port {
				t.Fatalf("port = %d, want %d", cfg.Reports.SMTP.Port, tt.port)
			}
			if cfg.Events.AggregateRetention != DefaultAggregateRetention || cfg.Events.Retention != 720*time.Hour {
				t.Fatalf("events defaults: %+v", cfg.Events)
			}
		})
	}
}
