package optout

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// gathered returns the registry's counters and gauges by name{label=value}.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range mt.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case mt.Counter != nil:
				got[name] = mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				got[name] = mt.GetGauge().GetValue()
			}
		}
	}
	return got
}

// TestMetricsCountOptOutsComplaintsTokensAndFlags: the family's counters
// keep their names, count every source and reason, and bound unknown
// labels to "other"; a decision with the escalation finding counts a flag.
func TestMetricsCountOptOutsComplaintsTokensAndFlags(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	m.OptOut(SourceUnsubscribe, 1)
	m.OptOut(SourceImport, 250)
	m.OptOut("something-else", 2) // bounded: counted as other
	m.Complaint()
	m.ComplaintRefused(RefusedSeveral)
	m.ComplaintRefused(RefusedSeveral)
	m.ComplaintRefused("made-up") // bounded: counted as other
	m.BadToken()
	m.BadToken()
	m.Observe(&decision.Decision{Customer: "acme", Stage: decision.StageRcpt, Results: []policy.Result{{Check: "optout_suppression", Finding: policy.Finding{Name: FindingEscalation}}}})
	m.Observe(&decision.Decision{Customer: "acme", Stage: decision.StageRcpt, Results: []policy.Result{{Check: "optout_suppression", Finding: policy.Finding{Name: FindingOptedOut}}}})
	got := gathered(t, reg)
	for name, want := range map[string]float64{
		"aupguard_optouts_recorded_total{source=import}":               250,
		"aupguard_optouts_recorded_total{source=other}":                2,
		"aupguard_optouts_recorded_total{source=unsubscribe}":          1,
		"aupguard_optouts_recorded_total{source=complaint}":            0,
		"aupguard_complaints_ingested_total":                           1,
		"aupguard_complaints_refused_total{reason=several_recipients}": 2,
		"aupguard_complaints_refused_total{reason=other}":              1,
		"aupguard_unsubscribe_invalid_tokens_total":                    2,
		"aupguard_customers_flagged_total":                             1,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (exported: %v), want %v", name, v, ok, want)
		}
	}
}
