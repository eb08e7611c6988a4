package admin

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/ratelimit"
)

// The console: server-rendered pages behind the token, no script (the
// Content-Security-Policy forbids any), one form post (clearing a flag)
// that, like every console form, the guard (guard.go) accepts only from
// the console's own origin with the form's anti-CSRF token.
//
//	GET  /decision?ref=REF          find a decision by the reference of a refusal
//	GET  /decisions                 recent decisions: customer, check, finding, action, since; paged
//	GET  /customers                 every customer with its source, links to its page
//	GET  /customers/{id}            one customer: definition, volume, checks, limits and use,
//	                                opt-out standing, flag with its clear action, changes
//	POST /customers/{id}/clear-flag clear the customer's opt-out flag
//	GET  /standing                  every stopped sender and flag, and why (standing.go)
func (s *Server) consoleRoutes(mux *routeMux) {
	byRef := s.refOwner(func(r *http.Request) string { return r.URL.Query().Get("ref") })
	mux.HandleFunc("GET /decision", s.pageDecision, func(r *http.Request, t access.Tenant) (*http.Request, bool) {
		if strings.TrimSpace(r.URL.Query().Get("ref")) == "" {
			return r, true // the empty search form
		}
		return access.Owned(byRef)(r, t)
	})
	mux.HandleFunc("GET /decisions", s.pageDecisions, access.Filtered("customer"))
	mux.HandleFunc("GET /customers", s.pageCustomers, access.Filtered("customer"))
	mux.HandleFunc("GET /customers/{id}", s.pageCustomer, access.Path("id"))
	mux.HandleFunc("POST /customers/{id}/clear-flag", s.clearFlag)
	mux.HandleFunc("GET /resellers", s.pageResellers)
	mux.HandleFunc("GET /resellers/{id}", s.pageReseller)
	if _, ok := s.standingHandler(); ok {
		mux.HandleFunc("GET /standing", s.pageStanding)
		mux.HandleFunc("POST "+standingSuspendPath, s.suspendForm)
		mux.HandleFunc("POST "+standingResumePath, s.resumeForm)
	}
}

// pageSize is the number of decisions per page of /decisions.
const pageSize = 50

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, data map[string]any) {
	data["Nav"] = name
	_, data["StandingNav"] = s.standingHandler()
	navData(r, data)
	var b bytes.Buffer
	if err := console.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Warn("admin: rendering "+name, "err", err)
		writeError(w, http.StatusInternalServerError, "rendering failed")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", defaultCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

func (s *Server) pageDecision(w http.ResponseWriter, r *http.Request) {
	ref := strings.ToUpper(strings.TrimSpace(r.URL.Query().Get("ref")))
	data := map[string]any{"Ref": ref}
	if ref == "" {
		s.render(w, r, http.StatusOK, "decision", data)
		return
	}
	rec, ok := s.record(r.Context())
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "no decision record")
		return
	}
	evs, err := rec.Events(r.Context(), events.Query{Ref: ref})
	if err != nil {
		s.fail(w, r, "reading the record", err)
		return
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	data["Events"] = evs
	code := http.StatusOK
	if len(evs) == 0 {
		code = http.StatusNotFound
	}
	s.render(w, r, code, "decision", data)
}

func (s *Server) pageDecisions(w http.ResponseWriter, r *http.Request) {
	rec, ok := s.record(r.Context())
	if !ok {
		writeError(w, http.StatusServiceUnavailable, "no decision record")
		return
	}
	q := r.URL.Query()
	since := q.Get("since")
	if since == "" {
		since = "24h"
	}
	from, until, err := report.ParseRange(since, "", "", 24*time.Hour, s.o.Clock.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, _ := strconv.Atoi(q.Get("page"))
	if page < 1 {
		page = 1
	}
	if page > 200 {
		page = 200
	}
	f := struct{ Customer, Login, Check, Finding, Action string }{q.Get("customer"), q.Get("login"), q.Get("check"), q.Get("finding"), q.Get("action")}
	// The record filters by customer and time; check, finding and action
	// are filtered here, over a bounded window of the newest events.
	evs, err := rec.Events(r.Context(), events.Query{Customer: f.Customer, Login: f.Login, Since: from, Until: until, Limit: 10000})
	if err != nil {
		s.fail(w, r, "reading the record", err)
		return
	}
	var sel []events.Event
	for _, e := range visibleEvents(r.Context(), evs) {
		if (f.Check == "" || e.Check == f.Check) && (f.Finding == "" || e.Finding == f.Finding) &&
			(f.Action == "" || e.Action == f.Action || e.Effective == f.Action) {
			sel = append(sel, e)
		}
	}
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].Time.After(sel[j].Time) })
	total := len(sel)
	lo := min((page-1)*pageSize, total)
	hi := min(lo+pageSize, total)
	link := func(p int) string {
		v := url.Values{}
		for k, x := range map[string]string{"customer": f.Customer, "login": f.Login, "check": f.Check, "finding": f.Finding, "action": f.Action, "since": since} {
			if x != "" {
				v.Set(k, x)
			}
		}
		v.Set("page", strconv.Itoa(p))
		return "/decisions?" + v.Encode()
	}
	data := map[string]any{"F": f, "Since": since, "Events": sel[lo:hi], "Total": total, "Page": page,
		"From": lo + 1, "To": hi, "Capped": len(evs) == 10000}
	if page > 1 {
		data["Prev"] = link(page - 1)
	}
	if hi < total {
		data["Next"] = link(page + 1)
	}
	s.render(w, r, http.StatusOK, "decisions", data)
}

// customerRow is a customer in the console's list.
type customerRow struct {
	ID, Name, Mode, Source string
	Shadows                bool
}

func (s *Server) customerRows() []customerRow {
	var out []customerRow
	if s.o.Directory != nil {
		for _, e := range s.o.Directory.List() {
			out = append(out, customerRow{e.Customer.ID, e.Customer.Name, e.Customer.Mode, e.Source, e.Shadows})
		}
		return out
	}
	for _, c := range s.cfg.Load().Customers {
		out = append(out, customerRow{c.ID, c.Name, c.Mode, customer.SourceConfig, false})
	}
	return out
}

// consolePage is how many customers one page of the console's list shows.
const consolePage = 500

func (s *Server) pageCustomers(w http.ResponseWriter, r *http.Request) {
	q := strings.ToLower(r.URL.Query().Get("q"))
	offset, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	offset = max(offset, 0)
	var rows []customerRow
	var total int
	if q == "" && s.o.Directory != nil {
		// A page of the directory: only its entries are copied.
		es, n := s.o.Directory.Page(offset, consolePage)
		for _, e := range es {
			rows = append(rows, customerRow{e.Customer.ID, e.Customer.Name, e.Customer.Mode, e.Source, e.Shadows})
		}
		total = n
	} else {
		all := s.customerRows()
		if q != "" {
			var sel []customerRow
			for _, c := range all {
				if strings.Contains(strings.ToLower(c.ID), q) || strings.Contains(strings.ToLower(c.Name), q) {
					sel = append(sel, c)
				}
			}
			all = sel
		}
		total = len(all)
		if offset < total {
			rows = all[offset:min(offset+consolePage, total)]
		}
	}
	if access.Scoped(r.Context()) {
		rows, total = s.visibleRows(r, q, offset)
	}
	data := map[string]any{"Rows": rows, "Total": total, "Q": r.URL.Query().Get("q"), "From": offset + 1, "To": offset + len(rows)}
	if offset+len(rows) < total {
		v := url.Values{"cursor": {strconv.Itoa(offset + len(rows))}}
		if q != "" {
			v.Set("q", r.URL.Query().Get("q"))
		}
		data["Next"] = "/customers?" + v.Encode()
	}
	s.render(w, r, http.StatusOK, "customers", data)
}

func (s *Server) pageCustomer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	data := map[string]any{"ID": id}
	var def map[string]any
	known := false
	if s.o.Directory != nil {
		if e, ok := s.o.Directory.Get(id); ok {
			known = true
			m, _ := customer.MarshalEntry(e)
			def = m
		}
	} else {
		for _, c := range s.cfg.Load().Customers {
			if c.ID == id {
				known = true
				def = map[string]any{"customer": c, "source": customer.SourceConfig}
			}
		}
	}
	if !known {
		s.render(w, r, http.StatusNotFound, "customer", data)
		return
	}
	data["Known"] = true
	if def != nil {
		data["Source"] = def["source"]
		data["Shadows"] = def["shadows_config"]
		if c, ok := def["customer"].(map[string]any); ok {
			data["Name"] = c["name"]
			data["Definition"] = yamlText(c)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var errs []string
	if rec, ok := s.record(ctx); ok {
		now := s.o.Clock.Now()
		cfg := s.cfg.Load()
		rep, err := report.Build(ctx, rec, report.Options{Since: now.Add(-7 * 24 * time.Hour), Until: now, Customer: id, Config: cfg, Top: cfg.Reports.Top, Now: now})
		if err != nil {
			errs = append(errs, "decision record unavailable")
		} else {
			data["Volume"] = template.HTML(rep.VolumeChart())
			data["Checks"] = template.HTML(rep.ChecksChart())
			data["CheckRows"] = rep.Checks
			data["Totals"] = rep.Totals
		}
	}
	if s.o.Quota != nil {
		if q, err := s.o.Quota(ctx, id); err != nil {
			errs = append(errs, "limits and use unavailable")
		} else if qr, ok := q.(ratelimit.QuotaReport); ok {
			data["Quota"] = qr
		}
	}
	cfg := s.cfg.Load()
	// The config was validated when it was loaded: its optout: section
	// decoded then, and ConfigOf returns it.
	oc, ocErr := optout.ConfigOf(cfg)
	if s.o.Standing != nil {
		if st, err := s.o.Standing(ctx, id); err != nil || ocErr != nil {
			errs = append(errs, "opt-out standing unavailable")
		} else {
			data["Standing"] = st
			data["Thresholds"] = map[string]any{"Warn": oc.Complaints.Warn, "Act": oc.Complaints.Act}
		}
	}
	if s.o.Store != nil {
		if pts, err := optout.Trend(ctx, s.o.Store, cfg, id); err != nil || ocErr != nil {
			errs = append(errs, "complaint rate trend unavailable")
		} else {
			data["Trend"] = template.HTML(report.ComplaintTrendChart(pts, oc.Complaints.Warn, oc.Complaints.Act))
		}
	}
	if s.o.Directory != nil {
		if log, err := s.o.Directory.Log(ctx, id, 50); err != nil {
			errs = append(errs, "change history unavailable")
		} else {
			data["Changes"] = log
		}
	}
	var panels []map[string]any
	for _, p := range s.o.Panels {
		if p.Customer == nil {
			continue
		}
		h, err := p.Customer(ctx, cfg, id)
		if err != nil {
			errs = append(errs, p.Title+" unavailable")
			s.log.Warn("console: panel failed", "panel", p.Name, "customer", id, "err", err)
			continue
		}
		if h != "" {
			panels = append(panels, map[string]any{"Name": p.Name, "Title": p.Title, "HTML": h})
		}
	}
	data["Panels"] = panels
	if p, _ := access.FromContext(r.Context()); p.Admin {
		data["CSRF"] = s.formToken(r, clearFlagPath(id))
	}
	data["Cleared"] = r.URL.Query().Get("cleared") != ""
	data["Errors"] = errs
	s.render(w, r, http.StatusOK, "customer", data)
}

// clearFlagPath is the action of a customer's clear-flag form (its
// anti-CSRF token is bound to it).
func clearFlagPath(id string) string { return "/customers/" + id + "/clear-flag" }

// clearFlag clears a customer's opt-out flag through the mounted flag
// handler (DELETE /api/customers/{id}/flag) and returns to the page. The
// guard has checked the form's origin and anti-CSRF token.
func (s *Server) clearFlag(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h, ok := s.mounted("/api/customers/{id}/flag")
	if !ok {
		writeError(w, http.StatusNotImplemented, "no flag handler")
		return
	}
	req := httptest.NewRequestWithContext(r.Context(), http.MethodDelete, "/api/customers/"+url.PathEscape(id)+"/flag", nil)
	req.SetPathValue("id", id)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 300 && rec.Code != http.StatusNotFound {
		s.log.Warn("admin: clearing a flag failed", "customer", id, "status", rec.Code)
		writeError(w, http.StatusBadGateway, "clearing the flag failed")
		return
	}
	s.log.Info("customer flag cleared", "event", "flag_cleared", "customer", id, "via", "console")
	audit.Describe(r.Context(), "flag.clear", id, "flagged", "cleared (console)")
	http.Redirect(w, r, "/customers/"+url.PathEscape(id)+"?cleared=1", http.StatusSeeOther)
}

// attention returns the customers of a report that need a look: flagged,
// or with a complaint rate at warn or act.
func attention(rep *report.Report) []*optout.CustomerStatus {
	var out []*optout.CustomerStatus
	for _, c := range rep.Customers {
		if st := c.Standing; st != nil && (st.Flag != nil || st.RateLevel == "warn" || st.RateLevel == "act") {
			out = append(out, st)
		}
	}
	return out
}

// consoleHeader is the navigation and attention list put on top of the
// dashboard.
func consoleHeader(r *http.Request, rep *report.Report) template.HTML {
	var b bytes.Buffer
	data := map[string]any{"Nav": "dashboard", "Attention": attention(rep)}
	navData(r, data)
	_ = console.ExecuteTemplate(&b, "front", data)
	return template.HTML(b.String())
}

// navData adds who is signed in to a page's data: Admin (the audit page
// and the flag's clear action are the admin's) and Who.
func navData(r *http.Request, data map[string]any) {
	p, _ := access.FromContext(r.Context())
	data["Admin"] = p.Admin
	data["Who"] = p.Name
	if !p.Admin && p.Kind != "" {
		data["Scope"] = p.Kind + " " + p.ID
	}
}

// visibleRows is the console's customer list for a scoped token: only
// the customers it sees, matching q, a page from offset.
func (s *Server) visibleRows(r *http.Request, q string, offset int) ([]customerRow, int) {
	visible := access.Visible(r.Context())
	var all []customerRow
	for _, c := range s.customerRows() {
		if visible(c.ID) && (q == "" || strings.Contains(strings.ToLower(c.ID), q) || strings.Contains(strings.ToLower(c.Name), q)) {
			all = append(all, c)
		}
	}
	if offset >= len(all) {
		return nil, len(all)
	}
	return all[offset:min(offset+consolePage, len(all))], len(all)
}

// mounted returns the handler another package mounted for pattern.
func (s *Server) mounted(pattern string) (http.Handler, bool) {
	if h, ok := s.o.Mounts[pattern]; ok {
		return h, true
	}
	for _, rt := range s.o.Routes {
		if rt.Pattern == pattern {
			return rt.Handler, true
		}
	}
	return nil, false
}
