package optout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/jsonapi"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// APIDeps are what the HTTP handlers need.
type APIDeps struct {
	Store  *store.Handle
	Config *config.Config
	Secret secrets.Key
	Logger *slog.Logger
	Clock  clock.Clock
	// Counters, when set, count opt-outs, complaints and bad tokens.
	Counters Counters
}

func (d APIDeps) service() (*Service, error) {
	if d.Store == nil || d.Config == nil {
		return nil, errors.New("optout: APIDeps needs Store and Config")
	}
	s, err := NewService(d.Store, d.Config, d.Secret, d.Clock, d.Logger)
	if s != nil {
		s.Counters = d.Counters
	}
	return s, err
}

// Request body limits.
const (
	maxJSONBody = 64 << 10
	// MaxImportBody is the largest CSV body of POST /api/optouts/import.
	MaxImportBody = 64 << 20
)

// NewAPI returns the admin API handler (to be mounted behind the admin
// server's bearer-token middleware):
//
//	GET    /api/optouts?list=ID[&address=A]   check one address, or list (limit, CSV with format=csv)
//	POST   /api/optouts                        {"list","address","note"} → 201 (200 when already there)
//	DELETE /api/optouts?list=ID&address=A      remove (address or stored hash)
//	POST   /api/optouts/import?list=ID         CSV body (Content-Length required, at most MaxImportBody); every line's result
//	POST   /api/complaints[?reporter=NAME]     one ARF report (message/rfc822 body, at most 10 MiB)
//	GET    /api/customers/{id}/flag            CustomerStatus
//	DELETE /api/customers/{id}/flag            clear the flag
//
// list is a customer id or "*" for the provider-wide list.
func NewAPI(d APIDeps) (http.Handler, error) {
	svc, err := d.service()
	if err != nil {
		return nil, err
	}
	a := &api{svc: svc}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/optouts", a.get)
	mux.HandleFunc("POST /api/optouts", a.add)
	mux.HandleFunc("DELETE /api/optouts", a.remove)
	mux.HandleFunc("POST /api/optouts/import", a.importCSV)
	mux.HandleFunc("POST /api/complaints", a.complaint)
	mux.HandleFunc("GET /api/customers/{id}/flag", a.flag)
	mux.HandleFunc("DELETE /api/customers/{id}/flag", a.clear)
	return mux, nil
}

type api struct{ svc *Service }

var (
	writeJSON  = jsonapi.Write
	writeError = jsonapi.Error
)

// fail maps an error to its status: 400 for the caller's mistakes, 422 for
// unusable reports, 503 for a store outage (retry), 500 otherwise.
func (a *api) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadRequest):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrBadRequest.Error()+": "))
	case errors.Is(err, ErrMalformedReport), errors.Is(err, ErrUnattributed):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		a.svc.Log.Error("optout API: store failure", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store unavailable, nothing recorded; retry")
	default:
		a.svc.Log.Error("optout API failure", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func listParam(r *http.Request) string {
	if l := r.URL.Query().Get("list"); l != "" {
		return l
	}
	return r.URL.Query().Get("customer")
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list := listParam(r)
	if addr := q.Get("address"); addr != "" {
		e, ok, err := a.svc.Check(r.Context(), list, addr)
		if err != nil {
			a.fail(w, err)
			return
		}
		if !ok {
			writeJSON(w, http.StatusOK, map[string]any{"suppressed": false})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"suppressed": true, "entry": e})
		return
	}
	if err := knownList(a.svc.Config, list); err != nil {
		a.fail(w, badRequest(err))
		return
	}
	if q.Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if _, err := a.svc.Export(r.Context(), list, w); err != nil {
			a.svc.Log.Error("optout export failed", "list", list, "err", err)
		}
		return
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &limit); err != nil || limit <= 0 || limit > 100000 {
			a.fail(w, badRequest(fmt.Errorf("limit %q: want 1..100000", v)))
			return
		}
	}
	var es []Entry
	errStop := errors.New("limit")
	err := a.svc.Backend.Scan(r.Context(), list, func(e Entry) error {
		if len(es) == limit {
			return errStop
		}
		es = append(es, e)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		a.fail(w, err)
		return
	}
	total, lerr := a.svc.Backend.Len(r.Context(), list)
	if lerr != nil {
		a.fail(w, lerr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"list": list, "total": total, "entries": es, "truncated": errors.Is(err, errStop)})
}

func (a *api) add(w http.ResponseWriter, r *http.Request) {
	var req struct {
		List     string `json:"list"`
		Customer string `json:"customer"`
		Address  string `json:"address"`
		Note     string `json:"note"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.fail(w, badRequest(fmt.Errorf("JSON body: %v", err)))
		return
	}
	if req.List == "" {
		req.List = req.Customer
	}
	e, added, err := a.svc.Add(r.Context(), req.List, req.Address, SourceAPI, req.Note)
	if err != nil {
		a.fail(w, err)
		return
	}
	code := http.StatusOK
	if added {
		code = http.StatusCreated
	}
	writeJSON(w, code, map[string]any{"added": added, "entry": e})
}

func (a *api) remove(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("address")
	if addr == "" {
		a.fail(w, badRequest(errors.New("address parameter missing")))
		return
	}
	ok, err := a.svc.Remove(r.Context(), listParam(r), addr)
	if err != nil {
		a.fail(w, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not on the list")
		return
	}
	audit.Describe(r.Context(), "optout.remove", listParam(r), MaskAddress(addr), "removed")
	writeJSON(w, http.StatusOK, map[string]any{"removed": true})
}

// importCSV applies a CSV import line by line and answers every line's
// result (ImportResult). The body's size must be known before anything is
// applied: without a Content-Length it is refused (411), above
// MaxImportBody too (413), nothing read. Each record is read in bounded
// memory (MaxCSVRecord). A store failure part-way answers what was
// applied before it.
func (a *api) importCSV(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.ContentLength < 0:
		writeError(w, http.StatusLengthRequired, "Content-Length required (the import's size is checked before anything is applied)")
		return
	case r.ContentLength > MaxImportBody:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes: nothing applied; split the file", MaxImportBody))
		return
	}
	res, err := a.svc.Import(r.Context(), listParam(r), http.MaxBytesReader(w, r.Body, MaxImportBody), SourceImport)
	if err != nil {
		if errors.Is(err, ErrBadRequest) {
			a.fail(w, err)
			return
		}
		// The lines before the failure were applied, and said so.
		a.svc.Log.Error("opt-out import stopped", "list", listParam(r), "lines", res.Lines, "added", res.Added, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "import stopped part-way: the result says exactly which lines were applied (the counts); the rest were not", "result": res})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// complaint ingests one report. ?reporter=NAME names the feedback loop or
// mailbox it came from (the per-reporter cap counts against it; default:
// the report's From domain). A refused report answers 422 with why (429
// when the reporter is over its hourly cap) and records nothing; a report
// of a message and recipient already counted answers 200 with
// "duplicate": true.
func (a *api) complaint(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > maxReportSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report larger than %d bytes: not recorded", maxReportSize))
		return
	}
	res, err := a.svc.ComplaintFrom(r.Context(), r.URL.Query().Get("reporter"), http.MaxBytesReader(w, r.Body, maxReportSize+1))
	switch {
	case errors.Is(err, ErrReportTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report larger than %d bytes: not recorded", maxReportSize))
		return
	case errors.Is(err, ErrReporterCapped):
		w.Header().Set("Retry-After", "3600")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": err.Error(), "result": res})
		return
	case errors.Is(err, ErrRefused):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "result": res})
		return
	case err != nil:
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *api) flag(w http.ResponseWriter, r *http.Request) {
	st, err := a.svc.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *api) clear(w http.ResponseWriter, r *http.Request) {
	ok, err := a.svc.Clear(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	if ok {
		audit.Describe(r.Context(), "flag.clear", r.PathValue("id"), "flagged", "cleared")
	}
	writeJSON(w, http.StatusOK, map[string]any{"cleared": ok})
}

// NewUnsubscribeHandler returns the public one-click endpoint, /u/{token}:
// GET shows a confirmation page with a button and records nothing (link
// scanners fetch every URI of a message, RFC 8058 §3.2 and §4); POST — the
// one-click body "List-Unsubscribe=One-Click" or the page's button —
// records the opt-out on the customer's list and answers 200. A token that
// does not verify gets 400, and nothing is recorded.
func NewUnsubscribeHandler(d APIDeps) (http.Handler, error) {
	svc, err := d.service()
	if err != nil {
		return nil, err
	}
	u := &unsub{svc: svc}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /u/{token}", u.get)
	mux.HandleFunc("POST /u/{token}", u.post)
	return mux, nil
}

type unsub struct{ svc *Service }

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>{{.Title}}</h1><p>{{.Text}}</p>
{{if .Form}}<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>{{end}}
</body></html>
`))

type page struct {
	Title, Text string
	Form        bool
}

func (u *unsub) render(w http.ResponseWriter, code int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if err := pageTmpl.Execute(w, p); err != nil {
		// The status line is out: only the log can tell (a client gone).
		u.svc.Log.Debug("unsubscribe page not written", "err", err)
	}
}

func (u *unsub) token(w http.ResponseWriter, r *http.Request) (Token, bool) {
	t, err := ParseToken(u.svc.Settings.Secret, r.PathValue("token"), u.svc.Settings.TokenTTL, u.svc.Clock.Now())
	if errors.Is(err, ErrTokenExpired) {
		u.svc.Log.Info("unsubscribe: expired link", "customer", t.Customer, "issued", t.Issued, "method", r.Method)
		u.render(w, http.StatusGone, page{Title: "This link has expired",
			Text: fmt.Sprintf("Unsubscribe links in a message work for %s after it was sent, and this one is older. "+
				"What still works: the unsubscribe link in a more recent message from this sender, "+
				"the Unsubscribe or Report spam button of your mail program, "+
				"or asking the sender directly. Nothing was recorded from this link.", fmtTTL(u.svc.Settings.TokenTTL))})
		return t, false
	}
	if err != nil {
		u.svc.Log.Info("unsubscribe: bad token", "err", err, "method", r.Method)
		if u.svc.Counters != nil {
			u.svc.Counters.BadToken()
		}
		u.render(w, http.StatusBadRequest, page{Title: "Invalid link", Text: "This unsubscribe link is not valid. Please use the link from the message itself."})
		return t, false
	}
	return t, true
}

// fmtTTL says a token lifetime in days (or hours under two days).
func fmtTTL(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%d hours", int(d/time.Hour))
}

func (u *unsub) get(w http.ResponseWriter, r *http.Request) {
	t, ok := u.token(w, r)
	if !ok {
		return
	}
	u.render(w, http.StatusOK, page{Title: "Unsubscribe", Text: "Stop mail to " + maskAddr(t.Recipient) + " from this sender?", Form: true})
}

// maxOneClickBody bounds a one-click POST body: the RFC 8058 body is 26
// bytes, a multipart form of it a few hundred.
const maxOneClickBody = 8 << 10

// errNotOneClick is a POST body that is not the RFC 8058 one-click body.
var errNotOneClick = errors.New("body is not List-Unsubscribe=One-Click")

// oneClickBody checks RFC 8058 §3.2: the POST body holds the single form
// field List-Unsubscribe=One-Click, sent as application/x-www-form-urlencoded
// or multipart/form-data (the two encodings HTML forms use, RFC 7578); the
// body is read up to maxOneClickBody only. Anything else is not a one-click
// request and records nothing.
func oneClickBody(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, maxOneClickBody)
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("content type %q: %v", r.Header.Get("Content-Type"), err)
	}
	var form url.Values
	switch ct {
	case "application/x-www-form-urlencoded":
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if form, err = url.ParseQuery(strings.TrimRight(string(b), "\r\n")); err != nil {
			return err
		}
	case "multipart/form-data":
		if params["boundary"] == "" {
			return errors.New("multipart/form-data without boundary")
		}
		mr := multipart.NewReader(body, params["boundary"])
		f, err := mr.ReadForm(maxOneClickBody)
		if err != nil {
			return err
		}
		defer func() { _ = f.RemoveAll() }()
		if len(f.File) > 0 {
			return errors.New("multipart form carries a file")
		}
		form = url.Values(f.Value)
	default:
		return fmt.Errorf("content type %q: want application/x-www-form-urlencoded or multipart/form-data", ct)
	}
	if len(form) != 1 || len(form["List-Unsubscribe"]) != 1 || form.Get("List-Unsubscribe") != "One-Click" {
		return errNotOneClick
	}
	return nil
}

func (u *unsub) post(w http.ResponseWriter, r *http.Request) {
	t, ok := u.token(w, r)
	if !ok {
		return
	}
	// RFC 8058 §3.2: the POST carries List-Unsubscribe=One-Click (the
	// page's button sends the same). A POST with another body is not the
	// one-click request, whatever link it goes to: 400, nothing recorded.
	if err := oneClickBody(w, r); err != nil {
		u.svc.Log.Info("unsubscribe: POST without the one-click body", "customer", t.Customer, "err", err)
		u.render(w, http.StatusBadRequest, page{Title: "Not an unsubscribe request",
			Text: "Nothing was recorded. To unsubscribe, open the link in a browser and press the button, or use your mail program's Unsubscribe button."})
		return
	}
	if _, _, err := u.svc.Add(r.Context(), t.Customer, t.Recipient, SourceUnsubscribe, "one-click"); err != nil {
		u.svc.Log.Error("unsubscribe: recording failed", "customer", t.Customer, "err", err)
		u.render(w, http.StatusServiceUnavailable, page{Title: "Please try again", Text: "Your request could not be recorded right now. Please try again in a few minutes."})
		return
	}
	u.render(w, http.StatusOK, page{Title: "Unsubscribed", Text: maskAddr(t.Recipient) + " will receive no more mail from this sender."})
}

// maskAddr shows an address with most of its local part hidden.
func maskAddr(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 {
		return "your address"
	}
	return a[:1] + strings.Repeat("*", min(at-1, 6)) + a[at:]
}

// MaskAddress is an address as the audit trail shows it: its first letter
// and its domain (never the whole recipient).
func MaskAddress(a string) string { return maskAddr(a) }
