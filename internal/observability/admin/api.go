package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/jsonapi"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/store"
)

// Routes serves, behind the token (except /healthz):
//
//	GET /healthz                    200 while the process runs
//	GET /readyz                     200 when the store and resolver answer, else 503; "degraded" (200) while a component is behind
//	GET /metrics                    Prometheus exposition
//	GET /api/customers              customers with their last 24h figures, a page at a time (limit, cursor)
//	GET /api/customers/{id}         one customer: settings, last 24h, quota and use, opt-out standing
//	GET /api/customers/{id}/quota   the customer's limits and current use
//	GET /api/events                 events: ref, customer, since|from|to, limit
//	GET /api/events/{ref}           the events of one reference id (404 when none)
//	GET /api/report                 report: since|from|to, customer, format=json|text|csv|html
//	GET /                           dashboard: since, customer
//
// plus Options.Mounts. Every pattern is registered through routeMux, which
// lists them (Server.patterns) for the tests that try each route.
func (s *Server) routes() *http.ServeMux {
	mux := &routeMux{ServeMux: http.NewServeMux(), s: s, scopes: map[string]access.Scope{}}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	}, access.Any)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.Gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}}))
	}
	mux.HandleFunc("GET /api/customers", s.customers, access.Filtered("customer"))
	mux.HandleFunc("GET /api/customers/{id}", s.customer, access.Path("id"))
	mux.HandleFunc("GET /api/customers/{id}/quota", s.quota, access.Path("id"))
	mux.HandleFunc("GET /api/events", s.events, access.Filtered("customer"))
	mux.HandleFunc("GET /api/events/{ref}", s.eventsByRef, access.Owned(s.refOwner(func(r *http.Request) string { return r.PathValue("ref") })))
	mux.HandleFunc("GET /api/report", s.report, access.Query("customer"))
	mux.HandleFunc("GET /{$}", s.dashboard, access.Filtered("customer"))
	s.directoryRoutes(mux)
	s.consoleRoutes(mux)
	s.tenancyRoutes(mux)
	for pattern, h := range s.o.Mounts {
		mux.Handle(pattern, h)
	}
	for _, rt := range s.o.Routes {
		mux.Handle(rt.Pattern, rt.Handler, rt.Scope)
	}
	s.patterns, s.scopes = mux.patterns, mux.scopes
	return mux.ServeMux
}

// routeMux is a ServeMux that remembers its patterns and enforces each
// route's tenant scope (enforce): a route registered without one is the
// admin token's alone.
type routeMux struct {
	*http.ServeMux
	s        *Server
	patterns []string
	scopes   map[string]access.Scope
}

// Handle registers h for pattern, open to scoped tokens as scope says
// (at most one; none: admin token only).
func (m *routeMux) Handle(pattern string, h http.Handler, scope ...access.Scope) {
	var sc access.Scope
	if len(scope) > 1 {
		panic("admin: route " + pattern + " registered with more than one scope")
	}
	if len(scope) == 1 {
		sc = scope[0]
	}
	m.patterns = append(m.patterns, pattern)
	m.scopes[pattern] = sc
	m.ServeMux.Handle(pattern, m.s.enforce(pattern, sc, h))
}

// HandleFunc registers f for pattern (Handle).
func (m *routeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request), scope ...access.Scope) {
	m.Handle(pattern, http.HandlerFunc(f), scope...)
}

type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("admin: metrics", "err", v) }

var (
	writeJSON  = jsonapi.Write
	writeError = jsonapi.Error
)

// fail answers a failed dependency: 503 for a store outage, 500 otherwise.
// The error goes to the log; the client gets a short message.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	s.log.Warn("admin: "+what+" failed", "path", r.URL.Path, "err", err)
	writeError(w, code, what+" failed")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"status": "ready"}
	var degraded []string
	if s.o.Components != nil {
		for _, c := range s.o.Components() {
			out[c.Name] = c.Detail
			if c.Degraded != "" {
				degraded = append(degraded, c.Name+": "+c.Degraded)
			}
		}
	}
	if len(degraded) > 0 {
		// Mail flows as before; what the component feeds is stale. Not a
		// reason to take the gateway out of service: 200, said in the body
		// (and in the metrics).
		out["status"], out["degraded"] = "degraded", degraded
	}
	if s.o.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.o.Ready(ctx); err != nil {
			s.log.Warn("admin: not ready", "err", err)
			out["status"], out["error"] = "unavailable", err.Error()
			writeJSON(w, http.StatusServiceUnavailable, out)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// record returns the decision record, up to date (the recorder's queue
// flushed, within a second).
func (s *Server) record(ctx context.Context) (Record, bool) {
	if s.o.Events == nil {
		return nil, false
	}
	if f, ok := s.o.Events.(flusher); ok {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = f.Flush(fctx)
		cancel()
	}
	return s.o.Events, true
}

// customerInfo is a customer in the API.
type customerInfo struct {
	ID           string         `json:"id"`
	Name         string         `json:"name,omitempty"`
	Mode         string         `json:"mode"`
	AbuseContact string         `json:"abuse_contact,omitempty"`
	Reseller     string         `json:"reseller,omitempty"`
	Domains      []string       `json:"domains"`
	Last24h      *report.Counts `json:"last_24h,omitempty"`
}

func (s *Server) last24h(ctx context.Context, customer string) (map[string]report.Counts, error) {
	rec, ok := s.record(ctx)
	if !ok {
		return nil, nil
	}
	now := s.o.Clock.Now()
	r, err := report.Build(ctx, rec, report.Options{Since: now.Add(-24 * time.Hour), Until: now, Customer: customer, Now: now})
	if err != nil {
		return nil, err
	}
	out := map[string]report.Counts{}
	for _, c := range r.Customers {
		out[c.ID] = c.Counts
	}
	return out, nil
}

func info(c config.Customer, counts map[string]report.Counts) customerInfo {
	ci := customerInfo{ID: c.ID, Name: c.Name, Mode: c.Mode, AbuseContact: c.AbuseContact, Reseller: c.Reseller, Domains: c.Domains}
	if counts != nil {
		n := counts[c.ID]
		ci.Last24h = &n
	}
	return ci
}

func (s *Server) customers(w http.ResponseWriter, r *http.Request) {
	offset, limit, ok := page(w, r)
	if !ok {
		return
	}
	counts, err := s.last24h(r.Context(), "")
	if err != nil {
		s.fail(w, r, "reading the record", err)
		return
	}
	cfg := s.cfg.Load()
	all := cfg.Customers
	if access.Scoped(r.Context()) {
		visible := access.Visible(r.Context())
		all = nil
		for _, c := range cfg.Customers {
			if visible(c.ID) {
				all = append(all, c)
			}
		}
	}
	total := len(all)
	sel := all[min(offset, total):min(offset+limit, total)]
	out := make([]customerInfo, 0, len(sel))
	for _, c := range sel {
		out = append(out, info(c, counts))
	}
	writeJSON(w, http.StatusOK, pageInfo(map[string]any{"customers": out}, offset, len(out), total))
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (config.Customer, bool) {
	id := r.PathValue("id")
	for _, c := range s.cfg.Load().Customers {
		if c.ID == id {
			return c, true
		}
	}
	writeError(w, http.StatusNotFound, "no such customer")
	return config.Customer{}, false
}

func (s *Server) customer(w http.ResponseWriter, r *http.Request) {
	c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	counts, err := s.last24h(r.Context(), c.ID)
	if err != nil {
		s.fail(w, r, "reading the record", err)
		return
	}
	out := map[string]any{"customer": info(c, counts)}
	var errs []string
	if s.o.Quota != nil {
		if q, err := s.o.Quota(r.Context(), c.ID); err != nil {
			s.log.Warn("admin: quota failed", "customer", c.ID, "err", err)
			errs = append(errs, "quota unavailable")
		} else {
			out["quota"] = q
		}
	}
	if s.o.Standing != nil {
		if st, err := s.o.Standing(r.Context(), c.ID); err != nil {
			s.log.Warn("admin: opt-out standing failed", "customer", c.ID, "err", err)
			errs = append(errs, "opt-out standing unavailable")
		} else {
			out["standing"] = st
		}
	}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) quota(w http.ResponseWriter, r *http.Request) {
	c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if s.o.Quota == nil {
		writeError(w, http.StatusNotImplemented, "no quota source")
		return
	}
	q, err := s.o.Quota(r.Context(), c.ID)
	if err != nil {
		s.fail(w, r, "quota", err)
		return
	}
	writeJSON(w, http.StatusOK, q)
}

// period reads since/from/to of a request.
func (s *Server) period(q url.Values, def time.Duration) (time.Time, time.Time, error) {
	return report.ParseRange(q.Get("since"), q.Get("from"), q.Get("to"), def, s.o.Clock.Now())
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.record(r.Context())
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "no decision record")
		return
	}
	q := r.URL.Query()
	eq := events.Query{Ref: q.Get("ref"), Customer: q.Get("customer"), Login: q.Get("login")}
	if q.Get("since") != "" || q.Get("from") != "" || q.Get("to") != "" {
		var err error
		if eq.Since, eq.Until, err = s.period(q, 24*time.Hour); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit: want 1 to 10000")
			return
		}
		eq.Limit = n
	}
	evs, err := rec.Events(r.Context(), eq)
	if err != nil {
		s.fail(w, r, "reading the record", err)
		return
	}
	evs = visibleEvents(r.Context(), evs)
	if evs == nil {
		evs = []events.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (s *Server) eventsByRef(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.record(r.Context())
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "no decision record")
		return
	}
	evs, err := rec.Events(r.Context(), events.Query{Ref: r.PathValue("ref")})
	if err != nil {
		s.fail(w, r, "reading the record", err)
		return
	}
	if len(evs) == 0 {
		writeError(w, http.StatusNotFound, "no event with this reference")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (s *Server) buildReport(r *http.Request, def time.Duration) (*report.Report, int, error) {
	rec, ok := s.record(r.Context())
	if !ok {
		return nil, http.StatusServiceUnavailable, errors.New("no decision record")
	}
	q := r.URL.Query()
	since, until, err := s.period(q, def)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	cfg := s.cfg.Load()
	rep, err := report.Build(r.Context(), rec, report.Options{Since: since, Until: until, Customer: q.Get("customer"),
		Config: cfg, Top: cfg.Reports.Top, Standing: s.o.Standing, Now: s.o.Clock.Now(), Reputation: s.o.Reputation, Sections: s.o.ReportSections})
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	return rep, http.StatusOK, nil
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "json"
	}
	if report.ContentType(format) == report.ContentType("text") && format != "text" {
		writeError(w, http.StatusBadRequest, "format: want json, text, csv or html")
		return
	}
	rep, code, err := s.buildReport(r, 24*time.Hour)
	if err != nil {
		if code == http.StatusBadRequest {
			writeError(w, code, err.Error())
		} else {
			s.fail(w, r, "report", err)
		}
		return
	}
	w.Header().Set("Content-Type", report.ContentType(format))
	w.Header().Set("Cache-Control", "no-store")
	if format == "csv" {
		w.Header().Set("Content-Disposition", `attachment; filename="aupguard-report.csv"`)
	}
	if err := rep.Write(w, format); err != nil {
		s.log.Warn("admin: writing report", "err", err)
	}
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	if access.Scoped(r.Context()) && r.URL.Query().Get("customer") == "" {
		// A reseller's front page is its customers (the dashboard is one
		// customer's, or the provider's).
		http.Redirect(w, r, "/customers", http.StatusSeeOther)
		return
	}
	if c := r.URL.Query().Get("customer"); c != "" && c != "-" && !knownCustomer(cfg, c) {
		// A page for a customer that does not exist is not an empty page:
		// RFC 9110 §15.5.5, 404 Not Found.
		writeError(w, http.StatusNotFound, "no customer "+strconv.Quote(c))
		return
	}
	rep, code, err := s.buildReport(r, cfg.Admin.DashboardRange)
	if err != nil {
		if code == http.StatusBadRequest {
			writeError(w, code, err.Error())
		} else {
			s.fail(w, r, "dashboard", err)
		}
		return
	}
	q := r.URL.Query()
	var links []report.Link
	for _, d := range []string{"6h", "24h", "7d", "30d"} {
		v := url.Values{"since": {d}}
		if c := q.Get("customer"); c != "" {
			v.Set("customer", c)
		}
		cur := q.Get("since") == d || (q.Get("since") == "" && q.Get("from") == "" && d == "24h" && cfg.Admin.DashboardRange == 24*time.Hour)
		links = append(links, report.Link{Label: "last " + d, Href: "/?" + v.Encode(), Current: cur})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page is self-contained: no script, no outside resource.
	w.Header().Set("Content-Security-Policy", defaultCSP)
	if err := rep.WriteHTML(w, report.HTMLOptions{Dashboard: true, Refresh: cfg.Admin.DashboardRefresh, Ranges: links,
		Header: consoleHeader(r, rep), CustomerHref: "/customers/"}); err != nil {
		s.log.Warn("admin: writing dashboard", "err", err)
	}
}

// knownCustomer reports whether id is a configured customer.
func knownCustomer(cfg *config.Config, id string) bool {
	for _, c := range cfg.Customers {
		if c.ID == id {
			return true
		}
	}
	return false
}

// refOwner returns the Owned lookup of a decision reference: the
// customer of its events (found false when the record has none).
func (s *Server) refOwner(ref func(r *http.Request) string) func(r *http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		rec, ok := s.record(r.Context())
		if !ok {
			return "", false
		}
		evs, err := rec.Events(r.Context(), events.Query{Ref: strings.ToUpper(strings.TrimSpace(ref(r)))})
		if err != nil || len(evs) == 0 {
			return "", false
		}
		return evs[0].Customer, true
	}
}

// visibleEvents keeps the events whose customer the request's principal
// may see.
func visibleEvents(ctx context.Context, evs []events.Event) []events.Event {
	if !access.Scoped(ctx) {
		return evs
	}
	visible := access.Visible(ctx)
	out := evs[:0]
	for _, e := range evs {
		if visible(e.Customer) {
			out = append(out, e)
		}
	}
	return out
}
