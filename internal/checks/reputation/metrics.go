package reputation

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the reputation loop's state to Prometheus:
//
//	aupguard_delivery_results_total{class}         results counted per class (sent, hard, policy, other, deferred)
//	aupguard_delivery_results_unmatched_total      results of messages the gateway did not accept
//	aupguard_delivery_results_lost_total           results not counted because the store failed
//	aupguard_delivery_lines_foreign_total          delivery lines from a program that is not a configured Postfix delivery agent
//	aupguard_delivery_log_state{state}             1 for the reader's state (starting, following, retrying, ended), 0 for the others
//	aupguard_delivery_log_last_line_timestamp_seconds  when the last line was read (absent before the first)
//	aupguard_delivery_log_lag_bytes                written and not read yet (absent while unknown)
//	aupguard_delivery_log_lag_seconds              time since the reader had last read everything written
//	aupguard_delivery_log_errors_total{kind}       failed attempts to read, by kind (not_exist, permission, not_regular, symlink_loop, io)
//	aupguard_delivery_log_recoveries_total         failures the reader came back from
//	aupguard_delivery_log_rotations_total{how}     rotations seen (rename, truncate)
//	aupguard_customer_bounce_rate{customer}        hard-bounce rate over the window (top customers by volume)
//	aupguard_customer_bounce_final{customer}       final results in the window
//	aupguard_dnsbl_listed{address,zone}            1 while listed, 0 when not, absent before the first answer
//	aupguard_dnsbl_listings_total{address,zone}    times this process saw the address become listed
//	aupguard_dnsbl_queries_total{zone,result}      queries by result (listed, clean, error_code, unexpected, failed)
//	aupguard_dnsbl_mails_total{result}             postmaster mails about listings (sent, failed)
//	aupguard_queue_id_clashes_total                claims of a queue id another customer held (the first kept)
type Collector struct {
	Service *Service
	Reader  *Reader
	Watcher *Watcher
	// Top bounds the customer label values.
	Top int
}

var (
	descResults   = prometheus.NewDesc("aupguard_delivery_results_total", "Delivery results read from the MTA log and counted for a customer, by class.", []string{"class"}, nil)
	descUnmatched = prometheus.NewDesc("aupguard_delivery_results_unmatched_total", "Delivery results of messages the gateway did not accept (or has forgotten).", nil, nil)
	descLost      = prometheus.NewDesc("aupguard_delivery_results_lost_total", "Delivery results not counted because the store failed.", nil, nil)
	descForeign   = prometheus.NewDesc("aupguard_delivery_lines_foreign_total", "Delivery lines ignored: not logged by a configured Postfix delivery agent.", nil, nil)
	descState     = prometheus.NewDesc("aupguard_delivery_log_state", "1 for the delivery-log reader's current state, 0 for the others.", []string{"state"}, nil)
	descLastLine  = prometheus.NewDesc("aupguard_delivery_log_last_line_timestamp_seconds", "Unix time the delivery-log reader last read a line.", nil, nil)
	descLagBytes  = prometheus.NewDesc("aupguard_delivery_log_lag_bytes", "Bytes written to the delivery log and not read yet.", nil, nil)
	descLagSecs   = prometheus.NewDesc("aupguard_delivery_log_lag_seconds", "Seconds since the delivery-log reader had last read everything written.", nil, nil)
	descLogErrors = prometheus.NewDesc("aupguard_delivery_log_errors_total", "Failed attempts to read the delivery log, by kind.", []string{"kind"}, nil)
	descRecovered = prometheus.NewDesc("aupguard_delivery_log_recoveries_total", "Failures to read the delivery log the reader came back from.", nil, nil)
	descRotations = prometheus.NewDesc("aupguard_delivery_log_rotations_total", "Rotations of the delivery log seen, by how (rename, truncate).", []string{"how"}, nil)
	descRate      = prometheus.NewDesc("aupguard_customer_bounce_rate", "Hard-bounce rate of the customer over the bounce window (top customers by volume).", []string{"customer"}, nil)
	descFinal     = prometheus.NewDesc("aupguard_customer_bounce_final", "Final delivery results of the customer in the bounce window.", []string{"customer"}, nil)
	descListed    = prometheus.NewDesc("aupguard_dnsbl_listed", "1 while the egress address is listed on the zone, 0 when it is not.", []string{"address", "zone"}, nil)
	descListings  = prometheus.NewDesc("aupguard_dnsbl_listings_total", "Times the egress address was seen becoming listed on the zone.", []string{"address", "zone"}, nil)
	descQueries   = prometheus.NewDesc("aupguard_dnsbl_queries_total", "Blocklist queries by zone and result.", []string{"zone", "result"}, nil)
	descClashes   = prometheus.NewDesc("aupguard_queue_id_clashes_total", "Transactions that claimed a queue id another customer already held (the first is kept; a forged or duplicated milter transaction).", nil, nil)
	descMails     = prometheus.NewDesc("aupguard_dnsbl_mails_total", "Postmaster mails about listings, by result.", []string{"result"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descResults, descUnmatched, descLost, descForeign, descState, descLastLine, descLagBytes, descLagSecs, descLogErrors, descRecovered, descRotations, descRate, descFinal, descListed, descListings, descQueries, descMails, descClashes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if r := c.Reader; r != nil {
		for i, cl := range Classes {
			ch <- prometheus.MustNewConstMetric(descResults, prometheus.CounterValue, float64(r.Stats.ByClass[i].Load()), string(cl))
		}
		ch <- prometheus.MustNewConstMetric(descUnmatched, prometheus.CounterValue, float64(r.Stats.Unmatched.Load()))
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(r.Stats.StoreErrors.Load()))
		ch <- prometheus.MustNewConstMetric(descForeign, prometheus.CounterValue, float64(r.Stats.Foreign.Load()))
		snap := r.Snapshot()
		for _, st := range ReaderStates {
			v := 0.0
			if st == snap.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, st)
		}
		if snap.LastLine != nil {
			ch <- prometheus.MustNewConstMetric(descLastLine, prometheus.GaugeValue, float64(snap.LastLine.UnixNano())/1e9)
		}
		if snap.LagBytes != nil {
			ch <- prometheus.MustNewConstMetric(descLagBytes, prometheus.GaugeValue, float64(*snap.LagBytes))
		}
		ch <- prometheus.MustNewConstMetric(descLagSecs, prometheus.GaugeValue, snap.LagSeconds)
		for _, k := range ErrorKinds {
			ch <- prometheus.MustNewConstMetric(descLogErrors, prometheus.CounterValue, float64(snap.Errors[k]), k)
		}
		ch <- prometheus.MustNewConstMetric(descRecovered, prometheus.CounterValue, float64(snap.Recoveries))
		for _, h := range []string{RotationRename, RotationTruncate} {
			ch <- prometheus.MustNewConstMetric(descRotations, prometheus.CounterValue, float64(snap.Rotations[h]), h)
		}
	}
	if s := c.Service; s != nil {
		ch <- prometheus.MustNewConstMetric(descClashes, prometheus.CounterValue, float64(s.Clashes()))
		latest := s.Latest()
		sts := make([]Standing, 0, len(latest))
		for _, st := range latest {
			sts = append(sts, st)
		}
		sort.Slice(sts, func(i, j int) bool {
			if sts[i].Final() != sts[j].Final() {
				return sts[i].Final() > sts[j].Final()
			}
			return sts[i].Customer < sts[j].Customer
		})
		if c.Top > 0 && len(sts) > c.Top {
			sts = sts[:c.Top]
		}
		for _, st := range sts {
			ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, st.Rate, st.Customer)
			ch <- prometheus.MustNewConstMetric(descFinal, prometheus.GaugeValue, float64(st.Final()), st.Customer)
		}
	}
	if w := c.Watcher; w != nil {
		st := w.Stats
		st.mu.Lock()
		for k, l := range st.states {
			if !l.Known {
				continue
			}
			v := 0.0
			if l.Listed {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descListed, prometheus.GaugeValue, v, k.Address, k.Zone)
		}
		for _, k := range Keys(w.svc.Reputation()) {
			ch <- prometheus.MustNewConstMetric(descListings, prometheus.CounterValue, float64(st.listings[k]), k.Address, k.Zone)
		}
		for k, n := range st.queries {
			ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(n), k[0], k[1])
		}
		st.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(descMails, prometheus.CounterValue, float64(st.Mails.Load()), "sent")
		ch <- prometheus.MustNewConstMetric(descMails, prometheus.CounterValue, float64(st.MailErrors.Load()), "failed")
	}
}
