package optout

import (
	"github.com/aupguard/aupguard/internal/observability/access"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/engine/setup"
)

// adminPaths are the admin API's opt-out routes (one handler: NewAPI).
var adminPaths = []string{"/api/optouts", "/api/optouts/import", "/api/complaints", "/api/customers/{id}/flag"}

// setupRuntime registers what the family serves besides its checks: the
// opt-out API on the admin server, the public unsubscribe endpoint, its
// counters, and the postmaster notices of a flag and a high complaint
// rate. The handlers follow each reload.
func setupRuntime(h *setup.Host) error {
	if !h.Serving {
		return nil
	}
	m := NewMetrics()
	h.Collector(m)
	h.Observer(m)
	api, unsub := &swapHandler{}, &swapHandler{}
	build := func(cfg *config.Config) error {
		ad := APIDeps{Store: h.Deps.Store, Config: cfg, Secret: h.Deps.Secret, Logger: h.Deps.Logger, Clock: h.Deps.Clock, Counters: m}
		a, err := NewAPI(ad)
		if err != nil {
			return err
		}
		u, err := NewUnsubscribeHandler(ad)
		if err != nil {
			return err
		}
		api.set(a)
		unsub.set(u)
		return nil
	}
	if err := build(h.Config()); err != nil {
		return err
	}
	h.OnReload(build)
	for _, p := range adminPaths {
		h.AdminRoute(p, api, adminScopes[p])
	}
	oc, err := ConfigOf(h.Config())
	if err != nil {
		return err
	}
	if u := oc.Unsubscribe; u.Enabled() {
		log := h.Deps.Logger
		h.PublicListener(setup.Listener{Name: "unsubscribe", Addr: u.Listen,
			MaxConnections: u.MaxConnections, MaxConnectionsPerClient: u.MaxConnectionsPerClient, Handler: unsub,
			Started: func(addr string) {
				if log != nil {
					log.Info("unsubscribe endpoint listening", "addr", addr, "base_url", u.BaseURL)
				}
			}})
	}
	h.Notice(FindingEscalation, "was flagged: it keeps sending to recipients who opted out")
	h.Notice(FindingRateHigh, "crossed the complaint-rate act threshold")
	return nil
}

// recipientForm is how the family canonicalises recipients for their
// hash (setup.Family.RecipientForm).
func recipientForm(cfg *config.Config) (bool, bool, error) {
	oc, err := ConfigOf(cfg)
	if err != nil {
		return false, false, err
	}
	return oc.CaseSensitiveLocal, oc.FoldsSubaddress(), nil
}

// swapHandler is an http.Handler whose target is replaced on reload, so
// that the handlers built from the config follow it without restarting
// their listener.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

// ServeHTTP serves with the handler in force.
func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// Metrics are the family's counters (Counters, RefusalCounter) and the
// customers flagged (a decision observer), exported to Prometheus.
type Metrics struct {
	optouts           *prometheus.CounterVec
	reports           prometheus.Counter
	badTokens         prometheus.Counter
	flagged           prometheus.Counter
	refusedComplaints *prometheus.CounterVec
}

// NewMetrics returns the counters, every source and reason at 0 so that
// an alert on an increase sees the first one.
func NewMetrics() *Metrics {
	m := &Metrics{
		optouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_optouts_recorded_total",
			Help: "New opt-out entries recorded by this gateway, by source (unsubscribe, complaint, api, import, cli)."}, []string{"source"}),
		reports:   prometheus.NewCounter(prometheus.CounterOpts{Name: "aupguard_complaints_ingested_total", Help: "Complaint (ARF) reports counted (a complaint recorded for its customer; duplicates and refused reports are not)."}),
		badTokens: prometheus.NewCounter(prometheus.CounterOpts{Name: "aupguard_unsubscribe_invalid_tokens_total", Help: "Unsubscribe requests with an invalid or expired token."}),
		flagged:   prometheus.NewCounter(prometheus.CounterOpts{Name: "aupguard_customers_flagged_total", Help: "Customers flagged for sending to opted-out recipients."}),
		refusedComplaints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_complaints_refused_total",
			Help: "Complaint (ARF) reports refused: reporter over its hourly cap, recipient not one the message went to, several recipients, bound to no message, stamp too old."}, []string{"reason"}),
	}
	for _, s := range SourceOrder {
		m.optouts.WithLabelValues(s)
	}
	return m
}

func (m *Metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.optouts, m.reports, m.badTokens, m.flagged, m.refusedComplaints}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}

// OptOut counts new opt-out entries (Counters). An unknown source is
// counted as "other", so the label stays bounded.
func (m *Metrics) OptOut(source string, n int) {
	switch source {
	case SourceUnsubscribe, SourceComplaint, SourceAPI, SourceImport, SourceCLI:
	default:
		source = "other"
	}
	m.optouts.WithLabelValues(source).Add(float64(n))
}

// Complaint counts an ingested complaint report (Counters).
func (m *Metrics) Complaint() { m.reports.Inc() }

// ComplaintRefused counts a refused complaint report (RefusalCounter); an
// unknown reason is counted as "other", so the label stays bounded.
func (m *Metrics) ComplaintRefused(reason string) {
	switch reason {
	case RefusedCapped, RefusedNotRecipient, RefusedSeveral, RefusedUnbound, RefusedExpired:
	default:
		reason = "other"
	}
	m.refusedComplaints.WithLabelValues(reason).Inc()
}

// BadToken counts an invalid unsubscribe token (Counters).
func (m *Metrics) BadToken() { m.badTokens.Inc() }

// Observe counts the customers flagged (decision.Observer).
func (m *Metrics) Observe(d *decision.Decision) {
	for _, r := range d.Results {
		if r.Finding.Name == FindingEscalation {
			m.flagged.Inc()
		}
	}
}

var (
	_ Counters          = (*Metrics)(nil)
	_ RefusalCounter    = (*Metrics)(nil)
	_ decision.Observer = (*Metrics)(nil)
)

// adminScopes open the opt-out API to scoped access tokens: a reseller's
// or customer's token reads and adds to its own suppression lists (never
// removes from them) and reads its own flag; the rest is the admin's.
var adminScopes = map[string]access.Scope{
	"/api/optouts": access.Methods(map[string]access.Scope{
		http.MethodGet: access.Query("list", "customer"), http.MethodPost: access.JSONField("list", "customer")}),
	"/api/customers/{id}/flag": access.Methods(map[string]access.Scope{http.MethodGet: access.Path("id")}),
}
