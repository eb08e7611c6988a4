package metrics

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Revision is the VCS revision the running binary was built from ("unknown"
// when the build carries none, as with `go run` outside a checkout).
func Revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

var descBuildInfo = prometheus.NewDesc("aupguard_build_info",
	"Always 1; the labels name the running build: version, VCS revision and Go version.",
	[]string{"version", "revision", "goversion"}, nil)

// SetBuildInfo exports aupguard_build_info{version,revision,goversion} 1.
// The first call wins.
func (m *Metrics) SetBuildInfo(version string) {
	rev, gov := Revision(), runtime.Version()
	m.register("build_info", newCollector(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, version, rev, gov)
	}, descBuildInfo))
}

var (
	descReloads = prometheus.NewDesc("aupguard_config_reload_total",
		"Config reloads (SIGHUP) by result: success (the new config is in force) or failure (refused, the running config stays; the log has every error with its place).",
		[]string{"result"}, nil)
	descReloadOK = prometheus.NewDesc("aupguard_config_last_reload_success_timestamp_seconds",
		"When the config in force was loaded (at start, then at each successful reload), as Unix time.", nil, nil)
	descReloadLast = prometheus.NewDesc("aupguard_config_last_reload_successful",
		"1 when the last load or reload of the config succeeded, 0 while the last reload was refused.", nil, nil)
)

// reloads are the config reload counters.
type reloads struct {
	mu        sync.Mutex
	ok, fail  uint64
	lastOK    time.Time
	lastWasOK bool
}

// ConfigLoaded records that the config in force was loaded at t: at start
// (not counted as a reload) or by a successful reload.
func (m *Metrics) ConfigLoaded(t time.Time, reload bool) {
	m.reloadStats.mu.Lock()
	defer m.reloadStats.mu.Unlock()
	if reload {
		m.reloadStats.ok++
	}
	m.reloadStats.lastOK, m.reloadStats.lastWasOK = t, true
}

// ConfigReloadFailed records a refused reload.
func (m *Metrics) ConfigReloadFailed() {
	m.reloadStats.mu.Lock()
	defer m.reloadStats.mu.Unlock()
	m.reloadStats.fail++
	m.reloadStats.lastWasOK = false
}

func (m *Metrics) collectReloads(ch chan<- prometheus.Metric) {
	r := &m.reloadStats
	r.mu.Lock()
	defer r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(r.ok), "success")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(r.fail), "failure")
	if !r.lastOK.IsZero() {
		ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, float64(r.lastOK.UnixNano())/1e9)
	}
	last := 0.0
	if r.lastWasOK {
		last = 1
	}
	ch <- prometheus.MustNewConstMetric(descReloadLast, prometheus.GaugeValue, last)
}
