package ratelimit

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/engine/setup"
)

// setupRuntime registers what the family serves besides its checks: the
// daily quotas' use in /metrics.
func setupRuntime(h *setup.Host) error {
	if !h.Serving || h.Labeled == nil {
		return nil
	}
	h.Collector(&quotaCollector{labeled: h.Labeled, read: func(ctx context.Context, id string) (QuotaReport, error) {
		return Quota(ctx, h.Deps.Store, h.Config(), id)
	}})
	return nil
}

var descQuotaUsed = prometheus.NewDesc("aupguard_customer_quota_used_ratio",
	"Share of each daily quota (messages_per_day, recipients_per_day, bytes_per_day) the customer has used over the sliding 24 h window, 0 to 1, for the customers with their own label value (admin.metrics_top_customers). At 1 the customer's mail is deferred (finding quota_exceeded).",
	[]string{"customer", "limit"}, nil)

// quotaScrapeTimeout bounds the store reads of one scrape.
const quotaScrapeTimeout = 2 * time.Second

// quotaCollector exports aupguard_customer_quota_used_ratio for the
// customers with their own label value, read at each scrape (one store
// round trip per customer, all within quotaScrapeTimeout; a customer
// whose read fails is left out of that scrape). Nothing runs between
// scrapes.
type quotaCollector struct {
	labeled func() []string
	read    func(ctx context.Context, id string) (QuotaReport, error)
}

// Describe implements prometheus.Collector.
func (c *quotaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descQuotaUsed }

// Collect implements prometheus.Collector.
func (c *quotaCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), quotaScrapeTimeout)
	defer cancel()
	for _, id := range c.labeled() {
		if ctx.Err() != nil {
			return
		}
		rep, err := c.read(ctx, id)
		if err != nil {
			continue
		}
		for _, l := range rep.Limits {
			if l.Kind != "quota" || l.Unlimited || l.Used == nil || l.Limit <= 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descQuotaUsed, prometheus.GaugeValue, float64(*l.Used)/float64(l.Limit), id, l.Name)
		}
	}
}
