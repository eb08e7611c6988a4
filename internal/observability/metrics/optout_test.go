package metrics

import (
	"testing"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

func TestOptOutCounters(t *testing.T) {
	m := New(Options{TopCustomers: 5})
	m.OptOut(optout.SourceUnsubscribe, 1)
	m.OptOut(optout.SourceImport, 250)
	m.OptOut("something-else", 2) // bounded: counted as other
	m.Complaint()
	m.ComplaintRefused(optout.RefusedSeveral)
	m.ComplaintRefused(optout.RefusedSeveral)
	m.ComplaintRefused("made-up") // bounded: counted as other
	m.BadToken()
	m.BadToken()
	m.Observe(&gateway.Decision{Customer: "acme", Stage: gateway.StageRcpt, Results: []policy.Result{{Check: "optout_suppression", Finding: policy.Finding{Name: optout.FindingEscalation}}}})
	m.WatchDirectory(func() DirectoryStats { return DirectoryStats{Version: 7, Customers: 3, Applied: 2} })
	mfs, err := m.Registry().Gather()
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
	for name, want := range map[string]float64{
		"aupguard_optouts_recorded_total{source=import}":               250,
		"aupguard_optouts_recorded_total{source=other}":                2,
		"aupguard_optouts_recorded_total{source=unsubscribe}":          1,
		"aupguard_complaints_ingested_total":                           1,
		"aupguard_complaints_refused_total{reason=several_recipients}": 2,
		"aupguard_complaints_refused_total{reason=other}":              1,
		"aupguard_unsubscribe_invalid_tokens_total":                    2,
		"aupguard_customers_flagged_total":                             1,
		"aupguard_directory_version":                                   7,
		"aupguard_directory_customers":                                 3,
		"aupguard_directory_changes_applied_total":                     2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
