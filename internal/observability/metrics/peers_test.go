package metrics

import (
	"testing"

	"github.com/aupguard/aupguard/milter"
)

// refusedSeries reads aupguard_milter_peers_refused_total by reason.
func refusedSeries(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "aupguard_milter_peers_refused_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestPeerRefused pins that every reason the milter refuses a peer for is
// exported from the start (at 0, so that an alert sees the first one) and
// counted under its own label.
func TestPeerRefused(t *testing.T) {
	m := New(Options{TopCustomers: 1})
	var _ milter.PeerObserver = m
	start := refusedSeries(t, m)
	if len(start) != len(milter.RefusedReasons) {
		t.Fatalf("series at start %v, want one per reason %v", start, milter.RefusedReasons)
	}
	for _, r := range milter.RefusedReasons {
		if v, ok := start[r]; !ok || v != 0 {
			t.Fatalf("%s at start: %v %v", r, v, ok)
		}
	}
	m.PeerRefused(milter.RefusedUser)
	m.PeerRefused(milter.RefusedUser)
	m.PeerRefused(milter.RefusedNetwork)
	if got := refusedSeries(t, m); got[milter.RefusedUser] != 2 || got[milter.RefusedNetwork] != 1 || got[milter.RefusedUnverified] != 0 {
		t.Fatalf("after three refusals: %v", got)
	}
}
