package daemon

import "github.com/aupguard/aupguard/metrics"

// dnsStatser is a resolver that can report its cache statistics to the
// metrics (the caching resolver).
type dnsStatser interface {
	metricsStats() metrics.DNSStats
}
