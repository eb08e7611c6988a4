package config

import (
	"os"
	"testing"
)

// TestReportsSnippet checks that configs/snippets/reports.yaml is a valid
// config (with its defaults spelled out).
func TestReportsSnippet(t *testing.T) {
	b, err := os.ReadFile("../../../configs/snippets/reports.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const cust = "customers:\n  - id: a\n    networks: [192.0.2.1]\n    domains: [a.example]\n"
	cfg, err := Parse(append(b, cust...), "reports.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Events.AggregateRetention != DefaultAggregateRetention || cfg.Admin.Listen != DefaultAdminListen || cfg.Reports.SMTP.Port != 25 {
		t.Fatalf("snippet differs from the defaults: %+v %+v", cfg.Events, cfg.Admin)
	}
}
