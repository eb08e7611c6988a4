package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/audit"
)

// Tenancy: scoped access tokens and the audit trail.
//
// Every route is registered through routeMux with its tenant scope
// (access.Scope; none: the admin token's alone). enforce wraps each
// registered handler: the admin token passes; a scoped token passes only
// when the route's scope says the tenant may see what the request names,
// and otherwise gets notFound, the same 404 whether the thing belongs to
// another tenant or does not exist. Every successful write is recorded in
// the audit trail with who, from where and what (a handler describes its
// change with audit.Describe; without, the route and its path values).

// notFoundMsg is the one body of every 404 a scoped token gets for what
// it may not see.
const notFoundMsg = "not found"

func notFound(w http.ResponseWriter) { writeError(w, http.StatusNotFound, notFoundMsg) }

// AuditLog is the audit trail the server records changes in and serves
// (*audit.Log).
type AuditLog interface {
	audit.Recorder
	Entries(ctx context.Context, q audit.Query) ([]audit.Entry, error)
}

// Route is a handler another package mounts with its tenant scope.
type Route struct {
	// Pattern is the ServeMux pattern ("GET /api/x/{id}" or, for a
	// handler serving several methods, "/api/x").
	Pattern string
	Handler http.Handler
	// Scope opens the route to scoped tokens (nil: admin token only).
	Scope access.Scope
}

// owners is the directory the tenants are judged against.
type owners struct{ s *Server }

// ResellerOf returns a customer's reseller, from the live directory or
// the config.
func (o owners) ResellerOf(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	if o.s.o.Directory != nil {
		if e, ok := o.s.o.Directory.Get(id); ok {
			return e.Customer.Reseller, true
		}
		return "", false
	}
	for _, c := range o.s.cfg.Load().Customers {
		if c.ID == id {
			return c.Reseller, true
		}
	}
	return "", false
}

// adminPrincipal is the admin token's principal.
var adminPrincipal = access.Principal{Name: "admin", Admin: true}

// cliActor is what the CLI says it is (Aupguard-Actor, honoured only with
// the admin token, whose holder may act as anyone anyway).
var cliActor = regexp.MustCompile(`^cli:[A-Za-z0-9._-]{1,64}$`)

// enforce wraps a registered handler with its route's scope and the audit
// trail.
func (s *Server) enforce(pattern string, scope access.Scope, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := access.FromContext(r.Context())
		if !ok {
			// Not through authenticated (only /healthz): the route must
			// be the public one.
			h.ServeHTTP(w, r)
			return
		}
		if !p.Admin {
			if scope == nil {
				notFound(w)
				return
			}
			t := access.Tenant{Principal: p, Owners: owners{s}}
			r2, ok := scope(r, t)
			if !ok {
				notFound(w)
				return
			}
			r = r2
		}
		if safeMethod(r.Method) {
			h.ServeHTTP(w, r)
			return
		}
		pending := &audit.Pending{}
		r = r.WithContext(audit.WithPending(r.Context(), pending))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if rec.status >= 400 || s.o.Audit == nil {
			return
		}
		e, described := pending.Entry()
		if !described {
			e = audit.Entry{Action: r.Method + " " + routePath(pattern), Target: pathValues(pattern, r)}
		}
		// The handler's context may be done (client gone): the change is
		// made, its record must be too.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := audit.Record(ctx, s.o.Audit, e); err != nil {
			s.log.Error("admin: recording a change in the audit trail failed", "event", "audit_failed", "action", e.Action, "target", e.Target, "err", err)
		}
	})
}

// routePath is a pattern without its method.
func routePath(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
}

// pathValues lists the request's path wildcards, "name=value".
func pathValues(pattern string, r *http.Request) string {
	var parts []string
	for _, seg := range strings.Split(routePath(pattern), "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			n := strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}")
			n = strings.TrimSuffix(n, "...")
			if n == "$" {
				continue
			}
			parts = append(parts, n+"="+r.PathValue(n))
		}
	}
	return strings.Join(parts, " ")
}

// principal authenticates a presented token: the admin token (constant
// time), else a live scoped token from the store.
func (s *Server) principal(ctx context.Context, presented string) (access.Principal, bool, error) {
	if s.isAdminToken(presented) {
		return adminPrincipal, true, nil
	}
	if s.o.Tokens == nil {
		return access.Principal{}, false, nil
	}
	t, ok, err := s.o.Tokens.Authenticate(ctx, presented)
	if err != nil || !ok {
		return access.Principal{}, false, err
	}
	return t.Principal(), true, nil
}

// failures bounds wrong credentials per client: authFailBurst at once,
// then one per authFailEvery; a client over it is answered 429 before its
// credentials are looked at (guessing a 256-bit token is hopeless anyway;
// this keeps a guesser from costing the store a lookup per try).
type failures struct {
	burst   float64
	mu      sync.Mutex
	clients map[string]*failBucket
}

type failBucket struct {
	tokens float64
	last   time.Time
}

const (
	authFailBurst   = 20
	authFailEvery   = 3 * time.Second
	authFailClients = 10000
)

// clientKey is the client's address (an IPv6 /64).
func clientKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return host
}

// blocked reports whether the client has used up its wrong tries.
func (f *failures) blocked(client string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.clients[client]
	if b == nil {
		return false
	}
	b.refill(now, f.burst)
	return b.tokens < 1
}

// fail counts a wrong try.
func (f *failures) fail(client string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients == nil {
		f.clients = map[string]*failBucket{}
	}
	b := f.clients[client]
	if b == nil {
		if len(f.clients) >= authFailClients {
			// Forget the clients whose buckets are full again.
			for k, o := range f.clients {
				if o.refill(now, f.burst); o.tokens >= f.burst {
					delete(f.clients, k)
				}
			}
		}
		if len(f.clients) >= authFailClients {
			return
		}
		b = &failBucket{tokens: f.burst, last: now}
		f.clients[client] = b
	}
	b.refill(now, f.burst)
	b.tokens = max(b.tokens-1, 0)
}

func (b *failBucket) refill(now time.Time, burst float64) {
	b.tokens = min(burst, b.tokens+float64(now.Sub(b.last))/float64(authFailEvery))
	b.last = now
}

// tenancyRoutes serves the tokens and the audit trail, admin token only:
//
//	GET    /api/tokens          every token (name, scope, created, expiry, last use; never the token)
//	POST   /api/tokens          create one: {"name", "reseller"|"customer", "expires": "720h"}; the answer has the token, shown once
//	DELETE /api/tokens/{name}   revoke one
//	GET    /api/audit           the audit trail: since, who, limit
//	POST   /api/audit           record a change made elsewhere (the CLI beside a memory store): {"action", "target", "before", "after"}
//	GET    /audit               the audit trail's console page
//
// and to every token:
//
//	GET    /api/whoami          the principal of the request
//
// and, admin token only, GET /api/routes: every registered route and
// whether scoped tokens may use it (the access matrix's route list).
func (s *Server) tenancyRoutes(mux *routeMux) {
	mux.HandleFunc("GET /api/whoami", func(w http.ResponseWriter, r *http.Request) {
		p, _ := access.FromContext(r.Context())
		writeJSON(w, http.StatusOK, p)
	}, access.Any)
	mux.HandleFunc("GET /api/routes", s.routeList)
	if s.o.Tokens != nil {
		mux.HandleFunc("GET /api/tokens", s.tokenList)
		mux.HandleFunc("POST /api/tokens", s.tokenCreate)
		mux.HandleFunc("DELETE /api/tokens/{name}", s.tokenRevoke)
	}
	if s.o.Audit != nil {
		mux.HandleFunc("GET /api/audit", s.auditList)
		mux.HandleFunc("POST /api/audit", s.auditAdd)
		mux.HandleFunc("GET /audit", s.pageAudit)
	}
}

func (s *Server) tokenList(w http.ResponseWriter, r *http.Request) {
	ts, err := s.o.Tokens.Store.List(r.Context())
	if err != nil {
		s.fail(w, r, "listing the tokens", err)
		return
	}
	for i := range ts {
		ts[i].Hash = ""
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": ts})
}

// maxTokenBody bounds a token creation's body.
const maxTokenBody = 4 << 10

func (s *Server) tokenCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Reseller string `json:"reseller"`
		Customer string `json:"customer"`
		Expires  string `json:"expires"`
	}
	if !decodeJSON(w, r, maxTokenBody, &req) {
		return
	}
	kind, id := access.KindCustomer, req.Customer
	if req.Reseller != "" {
		if req.Customer != "" {
			writeError(w, http.StatusBadRequest, "a token is scoped to a reseller or a customer, not both")
			return
		}
		kind, id = access.KindReseller, req.Reseller
	}
	if kind == access.KindCustomer {
		if _, known := (owners{s}).ResellerOf(id); !known {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("customer %q: no such customer", id))
			return
		}
	} else if !s.knownReseller(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reseller %q: no such reseller", id))
		return
	}
	var ttl time.Duration
	if req.Expires != "" {
		d, err := parseTTL(req.Expires)
		if err != nil {
			writeError(w, http.StatusBadRequest, "expires: "+err.Error())
			return
		}
		ttl = d
	}
	by := audit.ActorOf(r.Context()).Who
	plain, t, err := s.o.Tokens.Create(r.Context(), req.Name, kind, id, ttl, by)
	switch {
	case errors.Is(err, access.ErrTokenExists):
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, access.ErrTooManyTokens):
		writeError(w, http.StatusConflict, err.Error())
		return
	case err != nil && strings.HasPrefix(err.Error(), "token "):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.fail(w, r, "creating the token", err)
		return
	}
	after := kind + " " + id
	if !t.Expires.IsZero() {
		after += ", expires " + t.Expires.Format(time.RFC3339)
	}
	audit.Describe(r.Context(), "token.create", t.Name, "", after)
	t.Hash = ""
	writeJSON(w, http.StatusCreated, map[string]any{"token": plain, "record": t,
		"note": "the token is shown this once: the store keeps only its digest"})
}

// knownReseller reports whether the reseller is in resellers: or some
// customer names it.
func (s *Server) knownReseller(id string) bool {
	if id == "" {
		return false
	}
	if s.cfg.Load().Reseller(id) != nil {
		return true
	}
	if s.o.Directory != nil {
		for _, e := range s.o.Directory.List() {
			if e.Customer.Reseller == id {
				return true
			}
		}
		return false
	}
	for _, c := range s.cfg.Load().Customers {
		if c.Reseller == id {
			return true
		}
	}
	return false
}

// parseTTL reads a duration, with "d" for days ("30d").
func parseTTL(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || days <= 0 || fmt.Sprint(days) != n {
			return 0, fmt.Errorf("%q: want a duration such as 720h or 30d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 720h or 30d", s)
	}
	return d, nil
}

func (s *Server) tokenRevoke(w http.ResponseWriter, r *http.Request) {
	t, err := s.o.Tokens.Store.Revoke(r.Context(), r.PathValue("name"))
	if errors.Is(err, access.ErrNoToken) {
		writeError(w, http.StatusNotFound, "no such token")
		return
	}
	if err != nil {
		s.fail(w, r, "revoking the token", err)
		return
	}
	audit.Describe(r.Context(), "token.revoke", t.Name, t.Kind+" "+t.ID, "revoked")
	writeJSON(w, http.StatusOK, map[string]any{"revoked": t.Name})
}

func (s *Server) auditQuery(w http.ResponseWriter, r *http.Request) (audit.Query, bool) {
	q := r.URL.Query()
	aq := audit.Query{Who: q.Get("who"), Limit: 100}
	if v := q.Get("since"); v != "" {
		since, _, err := s.period(map[string][]string{"since": {v}}, 24*time.Hour)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return aq, false
		}
		aq.Since = since
	}
	if v := q.Get("limit"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &aq.Limit); err != nil || aq.Limit < 1 || aq.Limit > 10000 {
			writeError(w, http.StatusBadRequest, "limit: want 1 to 10000")
			return aq, false
		}
	}
	return aq, true
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	aq, ok := s.auditQuery(w, r)
	if !ok {
		return
	}
	es, err := s.o.Audit.Entries(r.Context(), aq)
	if err != nil {
		s.fail(w, r, "reading the audit trail", err)
		return
	}
	if es == nil {
		es = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": es})
}

func (s *Server) pageAudit(w http.ResponseWriter, r *http.Request) {
	aq, ok := s.auditQuery(w, r)
	if !ok {
		return
	}
	es, err := s.o.Audit.Entries(r.Context(), aq)
	if err != nil {
		s.fail(w, r, "reading the audit trail", err)
		return
	}
	s.render(w, r, http.StatusOK, "audit", map[string]any{"Entries": es, "Who": aq.Who, "Since": r.URL.Query().Get("since")})
}

// decodeJSON reads a JSON body of at most limit bytes into v, unknown
// fields refused; false: answered 400 or 413.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	b, ok := readBody(w, r, limit)
	if !ok {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "JSON body: "+err.Error())
		return false
	}
	return true
}

// routeList answers the registered routes: pattern, and tenant true when
// scoped tokens may use it (within their scope).
func (s *Server) routeList(w http.ResponseWriter, r *http.Request) {
	type route struct {
		Pattern string `json:"pattern"`
		Tenant  bool   `json:"tenant"`
	}
	out := make([]route, 0, len(s.patterns))
	for _, p := range s.patterns {
		out = append(out, route{p, s.scopes[p] != nil})
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": out})
}

// auditAdd records a change a command made outside the API (the CLI on
// a memory store's gateway), as the request's actor.
func (s *Server) auditAdd(w http.ResponseWriter, r *http.Request) {
	var e audit.Entry
	if !decodeJSON(w, r, maxTokenBody, &e) {
		return
	}
	if e.Action == "" || !e.Time.IsZero() || e.Who != "" || e.From != "" {
		writeError(w, http.StatusBadRequest, "want action, target, before and after (who, from and time are the request's)")
		return
	}
	audit.Describe(r.Context(), e.Action, e.Target, e.Before, e.After)
	writeJSON(w, http.StatusCreated, map[string]any{"recorded": true})
}
