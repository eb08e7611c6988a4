package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// TestGrafanaDashboard checks that every metric configs/grafana-dashboard.json
// queries is one this package exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	m := New(Options{TopCustomers: 2})
	m.WatchEvents(fakeEvents{})
	m.WatchDNS(func() DNSStats { return DNSStats{} })
	m.Observe(&gateway.Decision{Stage: gateway.StageEOM, Customer: "a", Action: policy.Accept, Effective: policy.Accept,
		Results: []policy.Result{{Check: "c", Finding: policy.Finding{Name: "f"}, Action: policy.Accept}}})
	m.ObserveStage("eom", time.Millisecond)
	m.storeDur.WithLabelValues("get").Observe(0.001)
	m.storeErr.WithLabelValues("get").Inc()
	m.dnsDur.WithLabelValues("txt").Observe(0.001)
	m.dnsErr.WithLabelValues("txt").Inc()
	m.SessionOpened()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	used := regexp.MustCompile(`aupguard_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) < 10 {
		t.Fatalf("dashboard queries only %d metrics", len(used))
	}
	for _, name := range used {
		base := strings.TrimSuffix(name, "_bucket")
		if !have[base] {
			t.Errorf("dashboard queries %s, which is not exported", name)
		}
	}
}
