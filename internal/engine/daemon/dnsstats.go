package daemon

import (
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/resolver"
)

// dnsStats adapts the caching resolver's statistics to the metrics.
func dnsStats(r any) (func() metrics.DNSStats, bool) {
	c, ok := r.(*resolver.Cache)
	if !ok {
		return nil, false
	}
	return func() metrics.DNSStats {
		s := c.Stats()
		return metrics.DNSStats{Hits: s.Hits, Misses: s.Misses, Errors: s.Errors}
	}, true
}
