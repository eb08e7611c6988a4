package metrics

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBuildInfoAndReloads: build_info names the build; reloads count by
// result, and the success timestamp moves only on a successful load.
func TestBuildInfoAndReloads(t *testing.T) {
	m := New(Options{TopCustomers: 2})
	m.SetBuildInfo("1.2.3")
	t0 := time.Unix(1_800_000_000, 0)
	m.ConfigLoaded(t0, false)
	if got := gathered(t, m, `aupguard_build_info{goversion="`+runtime.Version()+`",revision="`+Revision()+`",version="1.2.3"}`); got != 1 {
		t.Fatalf("aupguard_build_info = %v, want 1 with version, revision and goversion", got)
	}
	check := func(ok, fail, last, ts float64) {
		t.Helper()
		for name, v := range map[string]float64{
			`aupguard_config_reload_total{result="success"}`:        ok,
			`aupguard_config_reload_total{result="failure"}`:        fail,
			"aupguard_config_last_reload_successful":                last,
			"aupguard_config_last_reload_success_timestamp_seconds": ts,
		} {
			if got := gathered(t, m, name); got != v {
				t.Errorf("%s = %v, want %v", name, got, v)
			}
		}
	}
	check(0, 0, 1, 1_800_000_000)
	m.ConfigReloadFailed()
	check(0, 1, 0, 1_800_000_000)
	m.ConfigLoaded(t0.Add(time.Minute), true)
	check(1, 1, 1, 1_800_000_060)
}

// gathered is the value of one sample, "name" or "name{labels}" as the
// exposition prints it (-1 when absent).
func gathered(t *testing.T, m *Metrics, sample string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	name, labels, _ := strings.Cut(sample, "{")
	labels = strings.TrimSuffix(labels, "}")
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, l := range mt.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case mt.Gauge != nil:
				return mt.GetGauge().GetValue()
			case mt.Counter != nil:
				return mt.GetCounter().GetValue()
			}
		}
	}
	return -1
}
