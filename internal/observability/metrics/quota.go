package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var descQuotaUsed = prometheus.NewDesc("aupguard_customer_quota_used_ratio",
	"Share of each daily quota (messages_per_day, recipients_per_day, bytes_per_day) the customer has used over the sliding 24 h window, 0 to 1, for the customers with their own label value (admin.metrics_top_customers). At 1 the customer's mail is deferred (finding quota_exceeded).",
	[]string{"customer", "limit"}, nil)

// QuotaUse is one daily quota of a customer: its limit and current use.
type QuotaUse struct {
	Limit string
	Used  int64
	Max   int64
}

// QuotaFunc reads a customer's daily quotas (one store round trip).
type QuotaFunc func(ctx context.Context, customer string) ([]QuotaUse, error)

// quotaScrapeTimeout bounds the store reads of one scrape.
const quotaScrapeTimeout = 2 * time.Second

// WatchQuotas exports aupguard_customer_quota_used_ratio for the customers
// with their own label value, read at each scrape (one store round trip
// per customer, all within quotaScrapeTimeout; a customer whose read fails
// is left out of that scrape). Nothing runs between scrapes.
func (m *Metrics) WatchQuotas(read QuotaFunc) {
	m.register("quotas", newCollector(func(ch chan<- prometheus.Metric) {
		ctx, cancel := context.WithTimeout(context.Background(), quotaScrapeTimeout)
		defer cancel()
		for _, id := range m.labels.labeledIDs() {
			if ctx.Err() != nil {
				return
			}
			qs, err := read(ctx, id)
			if err != nil {
				continue
			}
			for _, q := range qs {
				if q.Max <= 0 {
					continue
				}
				ch <- prometheus.MustNewConstMetric(descQuotaUsed, prometheus.GaugeValue, float64(q.Used)/float64(q.Max), id, q.Limit)
			}
		}
	}, descQuotaUsed))
}
