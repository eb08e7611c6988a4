package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/connguard"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/jsonapi"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/admin"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/observability/notify"
	"github.com/aupguard/aupguard/internal/observability/report"
)

// httpService is an HTTP listener run beside the milter.
type httpService struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func newHTTPService(name string, ln net.Listener, h http.Handler, log *slog.Logger) *httpService {
	return &httpService{name: name, ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}

// guardedListen listens on addr for the HTTP listener name, capped by lim
// and with accept errors retried (connguard): no client of it can end
// the process or take the descriptors the milter needs.
func guardedListen(name, addr string, lim connguard.Limits, log *slog.Logger) (*connguard.LimitListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	return connguard.Limit(connguard.Retry(ln, name, log), name, lim, log), nil
}

// registerListenerMetrics exports a guarded listener's figures: failed
// accepts retried, and (capped listeners) connections held and refused.
func registerListenerMetrics(reg *prometheus.Registry, name string, r *connguard.RetryListener, l *connguard.LimitListener) error {
	labels := prometheus.Labels{"listener": name}
	cs := []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aupguard_listener_accept_failures_total",
		Help: "Accepts that failed (descriptors exhausted...) and were retried with back-off.", ConstLabels: labels},
		func() float64 { return float64(r.Failures()) })}
	if l != nil {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "aupguard_listener_connections_refused_total",
				Help: "Connections closed at once over the listener's cap (overall or per client).", ConstLabels: labels},
				func() float64 { return float64(l.Refused()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aupguard_listener_connections",
				Help: "Connections the listener holds.", ConstLabels: labels},
				func() float64 { return float64(l.Held()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("listener metrics: %w", err)
		}
	}
	return nil
}

// descriptorBudget raises the descriptor limit and shares it out between
// the milter and the capped HTTP listeners (lowering their caps in place
// when it must), logging what it found and decided.
func descriptorBudget(cfg *config.Config, log *slog.Logger, shares []connguard.Share) {
	nf, err := connguard.RaiseNoFile()
	if err != nil {
		log.Warn("descriptor limit: could not raise the soft limit to the hard one", "soft", nf.Soft, "hard", nf.Hard, "err", err.Error())
	}
	limit := int(min(nf.Soft, uint64(math.MaxInt32)))
	pool := 0
	if cfg.Store.Backend == "redis" {
		pool = cfg.Store.Redis.PoolSize
		if pool == 0 {
			pool = 10 * runtime.GOMAXPROCS(0) // go-redis's default
		}
		pool *= max(1, len(cfg.Store.Redis.Addrs))
	}
	before := make([]connguard.Limits, len(shares))
	for i, s := range shares {
		before[i] = *s.Limits
	}
	b := connguard.Fit(limit, connguard.OpenDescriptors(), pool, cfg.Milter.MaxConnections, shares)
	attrs := []any{"soft_at_start", nf.SoftBefore, "soft", nf.Soft, "hard", nf.Hard,
		"reserved", b.Reserve, "milter_max_connections", b.Milter, "http_available", b.Available, "http_wanted", b.Wanted}
	for _, s := range shares {
		attrs = append(attrs, s.Name+"_max_connections", s.Limits.Max, s.Name+"_max_connections_per_client", s.Limits.PerClient)
	}
	log.Info("descriptor budget", attrs...)
	if b.Short {
		log.Error("descriptor limit too low: milter.max_connections and the reserve do not fit; raise LimitNOFILE (ulimit -n) or lower milter.max_connections",
			"soft", nf.Soft, "reserved", b.Reserve, "milter_max_connections", b.Milter)
	}
	if b.Lowered {
		for i, s := range shares {
			log.Warn("descriptor budget: listener caps lowered to fit the descriptor limit beside the milter's connections",
				"listener", s.Name, "max_connections", before[i].Max, "lowered_to", s.Limits.Max,
				"max_connections_per_client", before[i].PerClient, "per_client_lowered_to", s.Limits.PerClient, "soft", nf.Soft)
		}
	}
}

func (s *httpService) Serve(ctx context.Context) error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *httpService) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// ServiceAddr returns the address of an extra listener by name
// ("unsubscribe", "admin"), or nil when it does not run.
func (d *Daemon) ServiceAddr(name string) net.Addr {
	for _, s := range d.extras {
		switch s := s.(type) {
		case *httpService:
			if s.name == name {
				return s.ln.Addr()
			}
		case *admin.Server:
			if name == "admin" {
				return s.Addr()
			}
		}
	}
	return nil
}

// Metrics returns the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// services builds the decision observers (event record, metrics) and the
// extra listeners (admin server, public unsubscribe endpoint). It runs
// before the chain is built, so that the resolver the checks get is the
// instrumented one.
func services(d *Daemon) ([]gateway.Observer, []Service, error) {
	cfg := d.cfg
	rec, err := events.New(d.deps.Store, cfg.Events, d.log)
	if err != nil {
		return nil, nil, fmt.Errorf("events: %w", err)
	}
	d.events = rec
	m := metrics.New(metrics.Options{TopCustomers: cfg.Admin.MetricsTopCustomers})
	m.WatchEvents(rec)
	m.WatchDirectory(d.directoryStats)
	m.WatchPanics(d.deps.Panics.Counts)
	v := d.opts.Version
	if v == "" {
		v = "dev"
	}
	m.SetBuildInfo(v)
	m.ConfigLoaded(d.deps.Clock.Now(), false)
	d.metrics = m
	if c := d.deps.Store.Client; c != nil {
		c.AddHook(m.RedisHook())
	}
	if b := d.deps.Store.Breaker; b != nil {
		m.WatchBreaker(func() metrics.BreakerStats {
			s := b.Stats()
			return metrics.BreakerStats{Open: s.Open, Opens: s.Opens, FastFailed: s.FastFailed}
		})
	}
	if d.deps.Resolver != nil {
		d.rawResolver = d.deps.Resolver
		if stats, ok := dnsStats(d.deps.Resolver); ok {
			m.WatchDNS(stats)
		}
		d.deps.Resolver = m.InstrumentResolver(d.deps.Resolver)
	}
	host := setup.NewHost(d.deps)
	host.Serving = true
	host.Labeled = m.LabeledCustomers
	host.Stdin = d.opts.Stdin
	if host.Stdin == nil {
		host.Stdin = os.Stdin
	}
	host.MailPostmaster = d.mailPostmaster
	if err := host.Setup(setup.Families()); err != nil {
		return nil, nil, err
	}
	d.host = host
	for _, c := range host.Collectors() {
		if err := m.Registry().Register(c); err != nil {
			return nil, nil, fmt.Errorf("family metrics: %w", err)
		}
	}
	obs := []gateway.Observer{rec, m}
	obs = append(obs, host.Observers()...)
	if cfg.Notifications.On(cfg) {
		mailer, err := report.NewMailer(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("notifications: %w", err)
		}
		mailer.Secret = d.deps.Secret
		d.notifier = notify.New(d.config, mailer, d.deps.Store, d.deps.Clock, d.log, host.Notices())
		obs = append(obs, d.notifier)
	}

	var svcs []Service
	public := host.PublicListeners()
	publicLim := make([]connguard.Limits, len(public))
	adminLim := connguard.Limits{Max: cfg.Admin.MaxConnections, PerClient: cfg.Admin.MaxConnectionsPerClient}
	adminOn := cfg.Admin.TokenFile != "" && cfg.Admin.Listen != "off"
	var shares []connguard.Share
	for i, l := range public {
		publicLim[i] = connguard.Limits{Max: l.MaxConnections, PerClient: l.MaxConnectionsPerClient}
		shares = append(shares, connguard.Share{Name: l.Name, Limits: &publicLim[i]})
	}
	if adminOn {
		shares = append(shares, connguard.Share{Name: "admin", Limits: &adminLim})
	}
	descriptorBudget(cfg, d.log, shares)
	stop := func() {
		for _, s := range svcs {
			_ = s.Shutdown(context.Background())
		}
	}
	for i, l := range public {
		ln, err := guardedListen(l.Name, l.Addr, publicLim[i], d.log)
		if err != nil {
			stop()
			return nil, nil, err
		}
		d.limits = append(d.limits, ln)
		svcs = append(svcs, newHTTPService(l.Name, ln, d.deps.Panics.HTTP(l.Name, l.Handler), d.log))
		if l.Started != nil {
			l.Started(ln.Addr().String())
		}
	}
	var adminLn net.Listener
	if adminOn {
		ln, err := guardedListen("admin", cfg.Admin.Listen, adminLim, d.log)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("admin: %w", err)
		}
		d.limits = append(d.limits, ln)
		adminLn = ln
	}
	ts, err := access.OpenTokens(d.deps.Store)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("access tokens: %w", err)
	}
	d.tokens = access.NewTokens(ts, d.deps.Clock)
	if d.audit, err = audit.Open(d.deps.Store, d.deps.Clock, func() time.Duration { return d.config().Audit.Retention }); err != nil {
		stop()
		return nil, nil, fmt.Errorf("audit trail: %w", err)
	}
	mounts := map[string]http.Handler{"/api/explain": http.HandlerFunc(d.explainAPI)}
	var routes []admin.Route
	for _, r := range host.AdminRoutes() {
		if _, dup := mounts[r.Pattern]; dup {
			stop()
			return nil, nil, fmt.Errorf("admin: route %s of family %s mounted twice", r.Pattern, r.Family)
		}
		mounts[r.Pattern] = r.Handler
		// Each family route keeps its tenant scope (nil: admin only).
		routes = append(routes, admin.Route{Pattern: r.Pattern, Handler: r.Handler, Scope: r.Scope})
	}
	for _, r := range routes {
		delete(mounts, r.Pattern)
	}
	components := func() []admin.Component {
		var out []admin.Component
		for _, c := range host.Components() {
			out = append(out, admin.Component{Name: c.Name, Degraded: c.Degraded, Detail: c.Detail})
		}
		return out
	}
	srv, err := admin.New(admin.Options{
		Listener: adminLn,
		Config:   cfg, Store: d.deps.Store, Events: rec, Gatherer: m.Registry(),
		Ready: d.ready, Components: components, Logger: d.log, Clock: d.deps.Clock, Directory: d.dir,
		Panics: d.deps.Panics, Secret: d.deps.Secret, Registerer: m.Registry(), CreateToken: true,
		Mounts: mounts, Routes: routes, Tokens: d.tokens, Audit: d.audit,
		ReportSections: host.ReportSections(), Panels: host.ConsolePanels(),
	})
	switch {
	case errors.Is(err, admin.ErrDisabled):
		if adminLn != nil {
			_ = adminLn.Close()
		}
		d.log.Warn("admin server not started: " + err.Error())
	case err != nil:
		stop()
		if adminLn != nil {
			_ = adminLn.Close()
		}
		return nil, nil, fmt.Errorf("admin: %w", err)
	default:
		d.admin = srv
		svcs = append(svcs, srv) // Serve logs "admin server listening", once
	}
	for _, s := range host.Services() {
		svcs = append(svcs, s)
	}
	for _, l := range d.limits {
		if err := registerListenerMetrics(m.Registry(), l.Name(), l.Retry(), l); err != nil {
			return nil, nil, err
		}
	}
	return obs, svcs, nil
}

// mailPostmaster mails provider.postmaster (setup.Host.MailPostmaster).
func (d *Daemon) mailPostmaster(ctx context.Context, subject, body string) error {
	c := d.config()
	if c.Provider.Postmaster == "" || c.Reports.SMTP.Host == "" {
		return fmt.Errorf("provider.postmaster or reports.smtp.host not set: no postmaster mail")
	}
	m, err := report.NewMailer(c)
	if err != nil {
		return err
	}
	m.Secret = d.deps.Secret
	return m.SendText(ctx, c.Provider.Postmaster, subject, body, d.deps.Clock.Now())
}

// Host is what the families registered (setup.Host).
func (d *Daemon) Host() *setup.Host { return d.host }

// ready is /readyz: the store answers and the resolver can resolve.
func (d *Daemon) ready(ctx context.Context) error {
	if err := d.deps.Store.Ping(ctx); err != nil {
		return err
	}
	if r, ok := d.rawResolver.(interface{ Ready(context.Context) error }); ok {
		return r.Ready(ctx)
	}
	return nil
}

// closeObservers flushes the event record at shutdown (the store is closed
// after it).
func closeObservers(d *Daemon) {
	if d.notifier != nil {
		_ = d.notifier.Close()
	}
	if d.events != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.events.Flush(ctx); err != nil {
			d.log.Warn("flushing events", "err", err)
		}
	}
}

// maxExplainMessage bounds the message POSTed to /api/explain, and
// maxExplains the explains served at once (a flood gets 429): at most
// 4 × 64 MiB of messages in memory.
const (
	maxExplainMessage = 64 << 20
	maxExplains       = 4
)

// explainAPI is POST /api/explain?customer=ID[&mail_from=A][&rcpt=A]...
// [&client=IP][&helo=NAME] with the message as the body: the chain's dry
// run (gateway.Explain) on the running gateway's own state, so that
// `aupguard explain` works beside a running gateway whatever the store
// (the embedded store's files belong to this process). Nothing is counted.
func (d *Daemon) explainAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		jsonapi.Error(w, http.StatusMethodNotAllowed, "POST the message")
		return
	}
	// At most maxExplains at once: each holds its message in memory.
	select {
	case d.explainSlots <- struct{}{}:
		defer func() { <-d.explainSlots }()
	default:
		w.Header().Set("Retry-After", "1")
		jsonapi.Error(w, http.StatusTooManyRequests, "too many explains at once")
		return
	}
	q := r.URL.Query()
	in := gateway.ExplainInput{Customer: q.Get("customer"), MailFrom: q.Get("mail_from"), Rcpts: q["rcpt"], Helo: q.Get("helo")}
	if in.Customer == "" {
		jsonapi.Error(w, http.StatusBadRequest, "customer is required")
		return
	}
	if len(in.Rcpts) > 1000 {
		jsonapi.Error(w, http.StatusBadRequest, "at most 1000 recipients")
		return
	}
	if c := q.Get("client"); c != "" {
		a, err := netip.ParseAddr(c)
		if err != nil {
			jsonapi.Error(w, http.StatusBadRequest, "client: not an IP address")
			return
		}
		in.Client = a
	}
	st := d.engine.State()
	if _, ok := st.Dir.ByID(in.Customer); !ok {
		jsonapi.Error(w, http.StatusNotFound, "unknown customer")
		return
	}
	msg, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExplainMessage))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			jsonapi.Error(w, http.StatusRequestEntityTooLarge, "message too large (at most 64 MiB)")
		} else {
			jsonapi.Error(w, http.StatusBadRequest, "reading the message failed")
		}
		return
	}
	in.Message = bytes.NewReader(msg)
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	res, err := gateway.Explain(ctx, st, in)
	if err != nil {
		d.log.Warn("admin: explain failed", "customer", in.Customer, "err", err)
		jsonapi.Error(w, http.StatusBadRequest, "explain failed: "+err.Error())
		return
	}
	jsonapi.Write(w, http.StatusOK, res)
}
