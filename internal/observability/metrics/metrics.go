// Package metrics exposes the gateway's Prometheus metrics: decisions by
// customer, check and action; findings; milter sessions and per-stage
// decision latency; store command latency and errors (a go-redis hook); DNS
// lookup latency, errors and cache hit rate; and the decision record's
// dropped events. The customer label is bounded: the busiest customers
// (admin.metrics_top_customers) get their own value, the rest "other".
package metrics

import (
	"context"
	"errors"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/observability/panics"
	"github.com/aupguard/aupguard/internal/resolver"
)

// Label values for decisions without a customer and for customers outside
// the top N.
const (
	LabelUnidentified = "unidentified"
	LabelOther        = "other"
)

// rerankEvery is how often the top-N customer set is recomputed.
const rerankEvery = 5 * time.Minute

// latencyBuckets suit milter replies: sub-millisecond to the 2s decision
// timeout.
var latencyBuckets = []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// Options configure Metrics.
type Options struct {
	// TopCustomers is how many customers get their own label value.
	TopCustomers int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Metrics holds the gateway's metrics in their own registry. It implements
// decision.Observer and decision.StageObserver, and the milter's session
// observer (SessionOpened, SessionClosed).
type Metrics struct {
	reg       *prometheus.Registry
	labels    *labeler
	decisions *prometheus.CounterVec
	findings  *prometheus.CounterVec
	rcpts     *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	stage     *prometheus.HistogramVec
	active    prometheus.Gauge
	sessions  prometheus.Counter
	refused   *prometheus.CounterVec
	storeDur  *prometheus.HistogramVec
	storeErr  *prometheus.CounterVec
	dnsDur    *prometheus.HistogramVec
	dnsErr    *prometheus.CounterVec

	once sync.Map // names of collectors registered once

	reloadStats reloads
}

// New creates the metrics.
func New(o Options) *Metrics {
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), labels: newLabeler(o.TopCustomers, o.Now)}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_decisions_total",
		Help: "Decisions (refusals at MAIL and RCPT, every message at end of message) by customer, stage, deciding check, verdict and action taken (they differ in monitor mode)."},
		[]string{"customer", "stage", "check", "action", "effective"})
	m.findings = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_findings_total",
		Help: "Findings of the checks (deciding or not) by check, finding and configured action."}, []string{"check", "finding", "action"})
	m.rcpts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_message_recipients_total",
		Help: "Accepted recipients of messages decided at end of message, by customer."}, []string{"customer"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_message_bytes_total",
		Help: "Size of messages decided at end of message, by customer."}, []string{"customer"})
	m.stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aupguard_stage_duration_seconds",
		Help: "Time spent deciding at each milter stage (mail, rcpt, eom).", Buckets: latencyBuckets}, []string{"stage"})
	m.active = prometheus.NewGauge(prometheus.GaugeOpts{Name: "aupguard_milter_sessions_active", Help: "MTA connections open."})
	m.sessions = prometheus.NewCounter(prometheus.CounterOpts{Name: "aupguard_milter_sessions_total", Help: "MTA connections accepted."})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_milter_peers_refused_total",
		Help: "MTA connections closed at once because the peer may not speak milter, by reason: user (a local process whose user is not in milter.allowed_peers), network (a remote address outside milter.allowed_mtas), unverified (the peer's credentials could not be read)."},
		[]string{"reason"})
	for _, r := range milterRefusedReasons {
		m.refused.WithLabelValues(r)
	}
	m.storeDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aupguard_store_command_duration_seconds",
		Help: "Redis command (or pipeline) latency.", Buckets: latencyBuckets}, []string{"command"})
	m.storeErr = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_store_errors_total",
		Help: "Redis commands (or pipelines) that failed."}, []string{"command"})
	m.dnsDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aupguard_dns_lookup_duration_seconds",
		Help: "DNS lookup latency as the checks see it (cache hits included).", Buckets: latencyBuckets}, []string{"type"})
	m.dnsErr = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_dns_errors_total",
		Help: "DNS lookups that failed (not counting names that do not exist)."}, []string{"type"})
	m.reg.MustRegister(newCollector(m.collectReloads, descReloads, descReloadOK, descReloadLast))
	m.reg.MustRegister(m.decisions, m.findings, m.rcpts, m.bytes, m.stage, m.active, m.sessions, m.refused, m.storeDur, m.storeErr, m.dnsDur, m.dnsErr,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry to serve on /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe counts a decision. It takes no lock the milter could wait on for
// long: a short mutex for the customer label, then atomic counters.
func (m *Metrics) Observe(d *decision.Decision) {
	if d == nil {
		return
	}
	cust := m.labels.label(d.Customer)
	check := d.Check
	if check == "" {
		check = "none"
	}
	m.decisions.WithLabelValues(cust, d.Stage, check, d.Action.String(), d.Effective.String()).Inc()
	for _, r := range d.Results {
		m.findings.WithLabelValues(r.Check, r.Finding.Name, r.Action.String()).Inc()
	}
	if d.Stage == decision.StageEOM {
		m.rcpts.WithLabelValues(cust).Add(float64(d.Rcpts))
		m.bytes.WithLabelValues(cust).Add(float64(d.Size))
	}
}

// ObserveStage records the time spent deciding at a stage.
func (m *Metrics) ObserveStage(stage string, d time.Duration) {
	m.stage.WithLabelValues(stage).Observe(d.Seconds())
}

// SessionOpened counts a new MTA connection.
func (m *Metrics) SessionOpened() {
	m.sessions.Inc()
	m.active.Inc()
}

// SessionClosed counts an MTA connection closed.
func (m *Metrics) SessionClosed() { m.active.Dec() }

// milterRefusedReasons are the reasons a milter peer is refused (the
// milter package's Refused* constants; this package does not import it).
var milterRefusedReasons = []string{"user", "network", "unverified"}

// PeerRefused counts an MTA connection refused because of its peer.
func (m *Metrics) PeerRefused(reason string) { m.refused.WithLabelValues(reason).Inc() }

// register adds a collector once (by name); later calls are ignored.
func (m *Metrics) register(name string, c prometheus.Collector) {
	if _, dup := m.once.LoadOrStore(name, true); dup {
		return
	}
	m.reg.MustRegister(c)
}

// EventSource is the decision recorder's counters (*events.Recorder).
type EventSource interface {
	Dropped() uint64
	Recorded() uint64
	Failed() uint64
	Queued() int
}

// WatchEvents exports the recorder's counters.
func (m *Metrics) WatchEvents(s EventSource) {
	m.register("events", newCollector(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped()))
		ch <- prometheus.MustNewConstMetric(descRecorded, prometheus.CounterValue, float64(s.Recorded()))
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(s.Failed()))
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(s.Queued()))
	}, descDropped, descRecorded, descFailed, descQueued))
}

var (
	descDropped  = prometheus.NewDesc("aupguard_events_dropped_total", "Decision events dropped because the recorder's queue was full.", nil, nil)
	descRecorded = prometheus.NewDesc("aupguard_events_recorded_total", "Decision events stored.", nil, nil)
	descFailed   = prometheus.NewDesc("aupguard_events_failed_total", "Decision events lost because the store failed.", nil, nil)
	descQueued   = prometheus.NewDesc("aupguard_events_queued", "Decision events waiting for the writer.", nil, nil)
	descHits     = prometheus.NewDesc("aupguard_dns_cache_hits_total", "DNS answers served from the cache.", nil, nil)
	descMisses   = prometheus.NewDesc("aupguard_dns_cache_misses_total", "DNS questions sent upstream.", nil, nil)
	descDNSErrs  = prometheus.NewDesc("aupguard_dns_upstream_errors_total", "Upstream DNS queries that failed.", nil, nil)
)

var descPanics = prometheus.NewDesc("aupguard_panics_total",
	"Panics recovered (each logged with its stack), by where: milter_connection (the milter library serving one MTA connection, which is closed), milter_handler (the gateway's handler of one milter event: the message is deferred), check (a check: it becomes its on_error), http (an admin API or unsubscribe request: answered 500).",
	[]string{"where"}, nil)

// WatchPanics exports the recovered panics, read at each scrape. Every
// place is exported from the start, at 0, so that an alert on an increase
// sees the first one.
func (m *Metrics) WatchPanics(counts func() []panics.Count) {
	m.register("panics", newCollector(func(ch chan<- prometheus.Metric) {
		seen := map[string]uint64{panics.WhereConnection: 0, panics.WhereHandler: 0, panics.WhereCheck: 0, panics.WhereHTTP: 0}
		for _, c := range counts() {
			seen[c.Where] = c.N
		}
		for w, n := range seen {
			ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(n), w)
		}
	}, descPanics))
}

var (
	descBreakerOpen  = prometheus.NewDesc("aupguard_store_circuit_open", "1 while the store's circuit breaker is open: store calls fail at once and the checks give their on_error outcome.", nil, nil)
	descBreakerOpens = prometheus.NewDesc("aupguard_store_circuit_opens_total", "Times the store's circuit breaker opened (store outages seen).", nil, nil)
	descBreakerFast  = prometheus.NewDesc("aupguard_store_circuit_fast_failures_total", "Store calls failed at once while the circuit breaker was open (the work they would have counted is not counted; see aupguard_findings_total{finding=\"check_error\"} for the messages).", nil, nil)
)

// BreakerStats are a store circuit breaker's state and counters.
type BreakerStats struct {
	Open              bool
	Opens, FastFailed uint64
}

// WatchBreaker exports the store's circuit breaker, read at each scrape.
func (m *Metrics) WatchBreaker(stats func() BreakerStats) {
	m.register("breaker", newCollector(func(ch chan<- prometheus.Metric) {
		s := stats()
		open := 0.0
		if s.Open {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(descBreakerOpen, prometheus.GaugeValue, open)
		ch <- prometheus.MustNewConstMetric(descBreakerOpens, prometheus.CounterValue, float64(s.Opens))
		ch <- prometheus.MustNewConstMetric(descBreakerFast, prometheus.CounterValue, float64(s.FastFailed))
	}, descBreakerOpen, descBreakerOpens, descBreakerFast))
}

// DNSStats are a DNS cache's counters.
type DNSStats struct {
	Hits, Misses, Errors uint64
}

// WatchDNS exports a DNS cache's counters, read at each scrape (the hit
// rate is hits / (hits + misses)).
func (m *Metrics) WatchDNS(stats func() DNSStats) {
	m.register("dns", newCollector(func(ch chan<- prometheus.Metric) {
		s := stats()
		ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(s.Hits))
		ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(s.Misses))
		ch <- prometheus.MustNewConstMetric(descDNSErrs, prometheus.CounterValue, float64(s.Errors))
	}, descHits, descMisses, descDNSErrs))
}

// collectorFunc is a Collector made of a function.
type collectorFunc func(ch chan<- prometheus.Metric)

type funcCollector struct {
	f     collectorFunc
	descs []*prometheus.Desc
}

func newCollector(f collectorFunc, descs ...*prometheus.Desc) prometheus.Collector {
	return &funcCollector{f: f, descs: descs}
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}
func (c *funcCollector) Collect(ch chan<- prometheus.Metric) { c.f(ch) }

// RedisHook returns a go-redis hook timing every command and pipeline:
// h.Client.AddHook(m.RedisHook()).
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m} }

type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.m.storeErr.WithLabelValues("dial").Inc()
		}
		return c, err
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		name := cmd.Name()
		h.m.storeDur.WithLabelValues(name).Observe(time.Since(start).Seconds())
		if err != nil && !errors.Is(err, redis.Nil) {
			h.m.storeErr.WithLabelValues(name).Inc()
		}
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.m.storeDur.WithLabelValues("pipeline").Observe(time.Since(start).Seconds())
		if err != nil && !errors.Is(err, redis.Nil) {
			h.m.storeErr.WithLabelValues("pipeline").Inc()
		}
		return err
	}
}

// InstrumentResolver wraps a resolver so that every lookup is timed and its
// failures counted. A name that does not exist is an answer, not an error.
func (m *Metrics) InstrumentResolver(r resolver.Resolver) resolver.Resolver {
	return instrumented{r: r, m: m}
}

type instrumented struct {
	r resolver.Resolver
	m *Metrics
}

func (i instrumented) done(typ string, start time.Time, err error) {
	i.m.dnsDur.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	var de *net.DNSError
	if err != nil && !(errors.As(err, &de) && de.IsNotFound) {
		i.m.dnsErr.WithLabelValues(typ).Inc()
	}
}

func (i instrumented) LookupTXT(ctx context.Context, name string) ([]string, error) {
	start := time.Now()
	v, err := i.r.LookupTXT(ctx, name)
	i.done("txt", start, err)
	return v, err
}

func (i instrumented) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	start := time.Now()
	v, err := i.r.LookupMX(ctx, name)
	i.done("mx", start, err)
	return v, err
}

func (i instrumented) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	start := time.Now()
	v, err := i.r.LookupIPAddr(ctx, host)
	i.done("ip", start, err)
	return v, err
}

func (i instrumented) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	start := time.Now()
	v, err := i.r.LookupAddr(ctx, addr)
	i.done("ptr", start, err)
	return v, err
}

// labeler bounds the customer label: at most n customers have their own
// value at a time. A customer gets one while there is room; every
// rerankEvery the n busiest (by decisions since the last rerank, halved
// each time) take the places. A customer losing its place keeps its past
// series; from then on it counts as "other".
type labeler struct {
	n   int
	now func() time.Time

	mu      sync.Mutex
	counts  map[string]float64
	labeled map[string]bool
	ranked  time.Time
}

func newLabeler(n int, now func() time.Time) *labeler {
	return &labeler{n: n, now: now, counts: map[string]float64{}, labeled: map[string]bool{}, ranked: now()}
}

func (l *labeler) label(customer string) string {
	if customer == "" {
		return LabelUnidentified
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[customer]++
	if t := l.now(); t.Sub(l.ranked) >= rerankEvery {
		l.ranked = t
		l.rerank()
	}
	if l.labeled[customer] {
		return customer
	}
	if len(l.labeled) < l.n {
		l.labeled[customer] = true
		return customer
	}
	return LabelOther
}

func (l *labeler) rerank() {
	ids := make([]string, 0, len(l.counts))
	for id := range l.counts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if l.counts[ids[i]] != l.counts[ids[j]] {
			return l.counts[ids[i]] > l.counts[ids[j]]
		}
		return ids[i] < ids[j]
	})
	l.labeled = map[string]bool{}
	for i, id := range ids {
		if i < l.n {
			l.labeled[id] = true
		}
		if l.counts[id] /= 2; l.counts[id] < 0.5 {
			delete(l.counts, id)
		}
	}
}

// labeledIDs are the customers with their own label value, sorted.
func (l *labeler) labeledIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.labeled))
	for id := range l.labeled {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// LabeledCustomers returns the customers that have their own label value
// (admin.metrics_top_customers), for per-customer collectors.
func (m *Metrics) LabeledCustomers() []string { return m.labels.labeledIDs() }
