package metrics

import "testing"

// TestDirectoryGauges: the live directory's version, customers and
// changes applied are exported as read at the scrape.
func TestDirectoryGauges(t *testing.T) {
	m := New(Options{TopCustomers: 5})
	m.WatchDirectory(func() DirectoryStats { return DirectoryStats{Version: 7, Customers: 3, Applied: 2} })
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			switch {
			case mt.Counter != nil:
				got[mf.GetName()] = mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				got[mf.GetName()] = mt.GetGauge().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"aupguard_directory_version":               7,
		"aupguard_directory_customers":             3,
		"aupguard_directory_changes_applied_total": 2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}
