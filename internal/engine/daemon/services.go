package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/jsonapi"
	"github.com/aupguard/aupguard/internal/observability/admin"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/observability/notify"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/ratelimit"
)

// httpService is an HTTP listener run beside the milter.
type httpService struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func newHTTPService(name, addr string, h http.Handler) (*httpService, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	return &httpService{name: name, ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}}, nil
}

func (s *httpService) Serve(ctx context.Context) error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *httpService) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// swapHandler is an http.Handler whose target is replaced on reload, so that
// handlers built from the config (the opt-out API, the unsubscribe page)
// follow it without restarting their listener.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }
func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

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
	m.WatchQuotas(d.quotaUse)
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
	obs := []gateway.Observer{rec, m}
	rep, err := newRepLoop(d, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("reputation: %w", err)
	}
	d.rep = rep
	if err := m.Registry().Register(&reputation.Collector{Service: rep.svc, Reader: rep.reader, Watcher: rep.watcher, Top: cfg.Admin.MetricsTopCustomers}); err != nil {
		return nil, nil, fmt.Errorf("reputation metrics: %w", err)
	}
	if cfg.Notifications.On(cfg) {
		mailer, err := report.NewMailer(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("notifications: %w", err)
		}
		mailer.Secret = d.deps.Secret
		d.notifier = notify.New(d.config, mailer, d.deps.Store, d.deps.Clock, d.log)
		obs = append(obs, d.notifier)
	}

	var svcs []Service
	if err := d.buildHandlers(cfg); err != nil {
		return nil, nil, err
	}
	oc, err := optout.ConfigOf(cfg)
	if err != nil {
		return nil, nil, err
	}
	if u := oc.Unsubscribe; u.Enabled() {
		s, err := newHTTPService("unsubscribe", u.Listen, d.deps.Panics.HTTP("unsubscribe", &d.unsubscribe))
		if err != nil {
			return nil, nil, err
		}
		svcs = append(svcs, s)
		d.log.Info("unsubscribe endpoint listening", "addr", s.ln.Addr().String(), "base_url", u.BaseURL)
	}
	srv, err := admin.New(admin.Options{
		Config: cfg, Store: d.deps.Store, Events: rec, Gatherer: m.Registry(),
		Ready: d.ready, Components: rep.components, Logger: d.log, Clock: d.deps.Clock, Directory: d.dir,
		Panics: d.deps.Panics, Secret: d.deps.Secret, Registerer: m.Registry(), CreateToken: true,
		Mounts: map[string]http.Handler{
			"/api/optouts": &d.optoutAPI, "/api/optouts/import": &d.optoutAPI,
			"/api/complaints": &d.optoutAPI, "/api/customers/{id}/flag": &d.optoutAPI,
			"/api/reputation": rep.API(), "/api/reputation/{customer}": rep.API(),
			"/api/explain": http.HandlerFunc(d.explainAPI),
		},
	})
	switch {
	case errors.Is(err, admin.ErrDisabled):
		d.log.Warn("admin server not started: " + err.Error())
	case err != nil:
		for _, s := range svcs {
			_ = s.Shutdown(context.Background())
		}
		return nil, nil, fmt.Errorf("admin: %w", err)
	default:
		d.admin = srv
		svcs = append(svcs, srv) // Serve logs "admin server listening", once
	}
	if rep.reader != nil || rep.watcher != nil {
		svcs = append(svcs, rep)
	}
	return obs, svcs, nil
}

// buildHandlers (re)builds the config-dependent HTTP handlers.
func (d *Daemon) buildHandlers(cfg *config.Config) error {
	ad := optout.APIDeps{Store: d.deps.Store, Config: cfg, Secret: d.deps.Secret, Logger: d.log, Clock: d.deps.Clock, Counters: d.metrics}
	api, err := optout.NewAPI(ad)
	if err != nil {
		return fmt.Errorf("opt-out API: %w", err)
	}
	unsub, err := optout.NewUnsubscribeHandler(ad)
	if err != nil {
		return fmt.Errorf("unsubscribe endpoint: %w", err)
	}
	d.optoutAPI.set(api)
	d.unsubscribe.set(unsub)
	if d.admin != nil {
		d.admin.SetConfig(cfg)
	}
	return nil
}

// quotaUse reads a customer's daily quotas for the metrics.
func (d *Daemon) quotaUse(ctx context.Context, id string) ([]metrics.QuotaUse, error) {
	rep, err := ratelimit.Quota(ctx, d.deps.Store, d.config(), id)
	if err != nil {
		return nil, err
	}
	var out []metrics.QuotaUse
	for _, l := range rep.Limits {
		if l.Kind != "quota" || l.Unlimited || l.Used == nil {
			continue
		}
		out = append(out, metrics.QuotaUse{Limit: l.Name, Used: *l.Used, Max: l.Limit})
	}
	return out, nil
}

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
