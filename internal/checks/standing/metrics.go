package standing

import "github.com/prometheus/client_golang/prometheus"

// collector exports the family's figures: the stops in force in this
// gateway's copy by action, and the content findings not counted because
// the flag's queue was full.
type collector struct {
	p       *Parts
	stops   *prometheus.Desc
	dropped *prometheus.Desc
}

func newCollector(p *Parts) *collector {
	return &collector{p: p,
		stops:   prometheus.NewDesc("aupguard_standing_stops", "Stops in force in this gateway's copy, by action.", []string{"action"}, nil),
		dropped: prometheus.NewDesc("aupguard_standing_findings_dropped_total", "Content findings not counted towards the flag: its queue was full.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.stops; ch <- c.dropped }

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.p.View.InForce()
	for _, a := range []Action{ActionHold, ActionDefer, ActionReject} {
		ch <- prometheus.MustNewConstMetric(c.stops, prometheus.GaugeValue, float64(n[a]), string(a))
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.p.Flags.Dropped()))
}
