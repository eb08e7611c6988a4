package metrics

import "github.com/prometheus/client_golang/prometheus"

// DirectoryStats are the live customer directory's figures on one gateway.
type DirectoryStats struct {
	// Version is the store version of the directory in force.
	Version int64
	// Customers is the number of customers in force.
	Customers int
	// Applied counts directory changes applied without reload; Failed
	// those refused (a conflict with the config file, a store outage).
	Applied, Failed uint64
}

var (
	descDirVersion   = prometheus.NewDesc("aupguard_directory_version", "Version of the customer directory in force (the store's change counter).", nil, nil)
	descDirCustomers = prometheus.NewDesc("aupguard_directory_customers", "Customers in force (config file and store).", nil, nil)
	descDirApplied   = prometheus.NewDesc("aupguard_directory_changes_applied_total", "Customer directory changes applied without reload.", nil, nil)
	descDirFailed    = prometheus.NewDesc("aupguard_directory_changes_failed_total", "Customer directory changes not applied (refused or store unavailable).", nil, nil)
)

// WatchDirectory exports the directory's figures, read at each scrape. No
// label: the figures stay bounded whatever the number of customers.
func (m *Metrics) WatchDirectory(stats func() DirectoryStats) {
	m.register("directory", newCollector(func(ch chan<- prometheus.Metric) {
		s := stats()
		ch <- prometheus.MustNewConstMetric(descDirVersion, prometheus.GaugeValue, float64(s.Version))
		ch <- prometheus.MustNewConstMetric(descDirCustomers, prometheus.GaugeValue, float64(s.Customers))
		ch <- prometheus.MustNewConstMetric(descDirApplied, prometheus.CounterValue, float64(s.Applied))
		ch <- prometheus.MustNewConstMetric(descDirFailed, prometheus.CounterValue, float64(s.Failed))
	}, descDirVersion, descDirCustomers, descDirApplied, descDirFailed))
}
