// Package admin is the gateway's admin HTTP server: /healthz, /readyz,
// /metrics (Prometheus), a JSON API (customers and their usage, events by
// reference id, reports, and what other packages mount: opt-outs,
// complaints, customer flags) and the postmaster's dashboard.
//
// It listens on loopback by default. Every endpoint but /healthz needs the
// bearer token of admin.token_file (RFC 6750 §2.1), compared in constant
// time; a browser may send it as the password of HTTP Basic authentication
// (RFC 7617), so that the dashboard opens without a header-setting client.
// Without a token file the server does not run (ErrDisabled): it never
// runs unauthenticated. The token never appears in the log.
//
// Every request that is not GET or HEAD passes the cross-site guard
// (guard.go): an API write needs a bearer token or the admin page's own
// origin, and its route's media type; a console form needs the same
// origin and its anti-CSRF token. Basic credentials a browser holds never
// authorise a write started by another site.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/panics"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/ratelimit"
)

// ErrDisabled is returned by New when the admin server is off: no
// admin.token_file, or admin.listen "off".
var ErrDisabled = errors.New("admin server disabled: admin.token_file is not set (it never runs without authentication) or admin.listen is off")

// Record is the decision record the API reads (*events.Recorder).
type Record interface {
	Events(ctx context.Context, q events.Query) ([]events.Event, error)
	Aggregates(ctx context.Context, q events.AggQuery) ([]events.Bucket, error)
}

// flusher is a Record that can be waited for (the recorder's queue).
type flusher interface {
	Flush(ctx context.Context) error
}

// Options configure the server.
type Options struct {
	// Config is the running config (SetConfig replaces it on reload).
	Config *config.Config
	// CreateToken has New write a random token to admin.token_file when
	// the file does not exist (first start), logging where (serve).
	CreateToken bool
	// Store is the gateway's store (for quotas and opt-out standings).
	Store *store.Handle
	// Events is the decision record; without it the event, report and
	// dashboard endpoints answer 503.
	Events Record
	// Gatherer serves /metrics (the metrics registry); nil: 404.
	Gatherer prometheus.Gatherer
	// Ready checks the store and the resolver for /readyz.
	Ready func(ctx context.Context) error
	// Components are the parts that can fall behind without the gateway
	// being unready (the delivery-log reader): /readyz shows each one's
	// detail, and answers "degraded" (still 200) while one is.
	Components func() []Component
	// Quota returns a customer's limits and use; default ratelimit.Quota
	// on Store.
	Quota func(ctx context.Context, customer string) (any, error)
	// Standing returns a customer's opt-out standing; default
	// report.OptOutStanding on Store.
	Standing report.StandingFunc
	// Reputation returns bounce standings and blocklist states; default
	// report.ReputationOf on Store.
	Reputation report.ReputationFunc
	// Directory is the live customer directory (nil: its API is not served).
	Directory Directory
	// Mounts are other packages' handlers by ServeMux pattern (e.g.
	// "/api/optouts", "/api/customers/{id}/flag"), served behind the token.
	Mounts map[string]http.Handler
	// ReportSections are the families' report sections (setup.Host), in
	// the report API's and the dashboard's reports.
	ReportSections []setup.ReportSection
	// Panels are the families' panels on the console's customer page.
	Panels []setup.ConsolePanel
	Logger *slog.Logger
	Clock  clock.Clock
	// Panics logs and counts a panic while serving a request.
	Panics *panics.Reporter
	// Listener, when set, is used instead of listening on admin.listen.
	Listener net.Listener
	// Secret keys the console forms' anti-CSRF tokens (the gateway's
	// secret); nil: a random key for this process.
	Secret secrets.Key
	// Registerer, when set, gets the server's own metrics (refused
	// cross-site requests).
	Registerer prometheus.Registerer
	// Routes are other packages' handlers with their tenant scopes
	// (Mounts are the admin token's alone).
	Routes []Route
	// Tokens checks the scoped access tokens (nil: only the admin token
	// authenticates, and the token API is not served).
	Tokens *access.Tokens
	// Audit is the trail every successful write is recorded in (nil:
	// none kept, and its API and page are not served).
	Audit AuditLog
	// AuthFailBurst is how many wrong credentials one client may present
	// before it is answered 429 (then one per 3 s); 0: 20.
	AuthFailBurst int
}

// Component is one part of the gateway in /readyz.
type Component struct {
	// Name is its key in the /readyz answer.
	Name string
	// Degraded says why it is behind or stopped ("" when it is not).
	Degraded string
	// Detail is shown as is (JSON).
	Detail any
}

// Server is the admin HTTP server.
type Server struct {
	o     Options
	cfg   atomic.Pointer[config.Config]
	log   *slog.Logger
	token [sha256.Size]byte
	ln    net.Listener
	srv   *http.Server
	tls   bool
	guard *guard
	// patterns are the mux's registered patterns (routes), for the
	// guard's and the access matrix's tests; scopes their tenant scopes.
	patterns []string
	scopes   map[string]access.Scope
	// fails bounds wrong credentials per client.
	fails failures
	// bulk and reports are the slots of the imports (importSlots).
	bulk, reports chan struct{}
}

// importSlots bounds the imports running at once, whoever sends them: a
// bulk import (customers, opt-outs) holds memory proportional to its
// caps, so one runs at a time; a complaint report at most 10 MiB, so a
// few. Another is answered 429 with Retry-After before its body is read.
const (
	bulkSlots        = 1
	reportSlots      = 4
	importRetryAfter = "5"
)

// bounded serves an import only when a slot is free (importSlots).
func (s *Server) bounded(next func(w http.ResponseWriter, r *http.Request, scheme string)) func(w http.ResponseWriter, r *http.Request, scheme string) {
	return func(w http.ResponseWriter, r *http.Request, scheme string) {
		if slots := s.importSlot(r); slots != nil {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			default:
				s.log.Warn("admin: import refused, another is running", "event", "import_busy", "path", r.URL.Path, "client", r.RemoteAddr)
				w.Header().Set("Retry-After", importRetryAfter)
				writeError(w, http.StatusTooManyRequests, "another import is running: nothing applied; retry later")
				return
			}
		}
		next(w, r, scheme)
	}
}

// importSlot returns the slots a request needs (nil: none).
func (s *Server) importSlot(r *http.Request) chan struct{} {
	if r.Method != http.MethodPost {
		return nil
	}
	switch r.URL.Path {
	case "/api/customers/import", "/api/optouts/import":
		return s.bulk
	case "/api/complaints":
		return s.reports
	}
	return nil
}

// New reads the token, listens and prepares the server; Serve serves.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("admin: no config")
	}
	ac := o.Config.Admin
	if ac.TokenFile == "" || ac.Listen == "off" {
		return nil, ErrDisabled
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	s := &Server{o: o, log: o.Logger, guard: newGuard(o.Secret), bulk: make(chan struct{}, bulkSlots), reports: make(chan struct{}, reportSlots)}
	s.cfg.Store(o.Config)
	s.fails.burst = float64(authFailBurst)
	if o.AuthFailBurst > 0 {
		s.fails.burst = float64(o.AuthFailBurst)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.guard.refused); err != nil {
			return nil, fmt.Errorf("admin metrics: %w", err)
		}
	}
	if o.CreateToken {
		created, err := WriteToken(ac.TokenFile, false)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file %s: creating it: %w", ac.TokenFile, err)
		}
		if created {
			s.log.Warn("admin token created: it is the console's password and the bearer token of the admin API and /metrics (mode 0600, not logged)", "event", "admin_token_created", "file", ac.TokenFile)
		}
	}
	tok, err := readToken(ac.TokenFile, s.log)
	if err != nil {
		return nil, err
	}
	// Comparing digests keeps the comparison constant-time whatever the
	// lengths (subtle.ConstantTimeCompare returns early on a length
	// mismatch).
	s.token = sha256.Sum256([]byte(tok))
	if s.o.Quota == nil && o.Store != nil {
		s.o.Quota = func(ctx context.Context, id string) (any, error) {
			return ratelimit.Quota(ctx, o.Store, s.cfg.Load(), id)
		}
	}
	if s.o.Reputation == nil && o.Store != nil {
		s.o.Reputation = func(ctx context.Context, ids []string, listings bool) ([]reputation.Standing, []reputation.Listing, error) {
			return report.ReputationOf(o.Store, s.cfg.Load())(ctx, ids, listings)
		}
	}
	if s.o.Standing == nil && o.Store != nil {
		s.o.Standing = func(ctx context.Context, id string) (*optout.CustomerStatus, error) {
			return report.OptOutStanding(o.Store, s.cfg.Load())(ctx, id)
		}
	}
	s.srv = &http.Server{
		Handler:           s.o.Panics.HTTP("admin", s.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if ac.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(ac.TLSCert, ac.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("admin TLS: %w", err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	s.ln = o.Listener
	if s.ln == nil {
		if s.ln, err = net.Listen("tcp", ac.Listen); err != nil {
			return nil, fmt.Errorf("admin listen %s: %w", ac.Listen, err)
		}
	}
	return s, nil
}

// readToken reads the token file; a file others can read is reported.
func readToken(path string, log *slog.Logger) (string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("admin.token_file %s does not exist: create it with `aupguard admin-token -config CONFIG` (mode 0600, never printed)", path)
	}
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("admin.token_file is readable by group or others; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("admin.token_file %s: the token must be at least 16 characters (aupguard admin-token writes one)", path)
	}
	return tok, nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.tls }

// SetConfig installs a reloaded config (customers, dashboard settings).
// The token, listener and TLS settings keep their values until restart.
func (s *Server) SetConfig(cfg *config.Config) { s.cfg.Store(cfg) }

// Serve serves until ctx is done or Shutdown is called.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	})
	defer stop()
	s.log.Info("admin server listening", "addr", s.ln.Addr().String(), "tls", s.tls)
	var err error
	if s.tls {
		err = s.srv.ServeTLS(s.ln, "", "")
	} else {
		err = s.srv.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// credentials returns the token a request presents: "Authorization:
// Bearer TOKEN" (RFC 6750 §2.1) or Basic with TOKEN as the password (RFC
// 7617), and the scheme that carried it, "bearer" or "basic" ("" when
// none).
func credentials(r *http.Request) (scheme, presented string) {
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok {
		return "", ""
	}
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "bearer":
		presented = strings.TrimSpace(cred)
	case "basic":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return "", ""
		}
		_, pw, ok := strings.Cut(string(b), ":")
		if !ok {
			return "", ""
		}
		presented = pw
	default:
		return "", ""
	}
	if presented == "" {
		return "", ""
	}
	return scheme, presented
}

// isAdminToken compares a presented token with the admin token in
// constant time.
func (s *Server) isAdminToken(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1
}

// defaultCSP is every admin response's Content-Security-Policy unless the
// handler sets its own: no script, no outside resource, no framing.
const defaultCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"

// statusRecorder remembers the status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Handler returns the server's handler: authentication, the cross-site
// guard, then the routes. The access log has method, path (never the
// query or headers), status, duration and client.
func (s *Server) Handler() http.Handler { return s.authenticated(s.bounded(s.guarded(s.routes()))) }

// authenticated is the authentication and access-log layer in front of
// serve, which gets the scheme that carried the token.
func (s *Server) authenticated(serve func(w http.ResponseWriter, r *http.Request, scheme string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		// No response of the admin origin may run script or be framed:
		// a script there would be same-origin, which the guard trusts.
		// A handler may set its own (stricter) headers.
		h := w.Header()
		h.Set("Content-Security-Policy", defaultCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		scheme, presented := credentials(r)
		client := clientKey(r.RemoteAddr)
		var p access.Principal
		ok := false
		if scheme != "" {
			if s.fails.blocked(client, s.o.Clock.Now()) {
				w.Header().Set("Retry-After", "10")
				writeError(rec, http.StatusTooManyRequests, "too many wrong credentials from this address; retry later")
				s.log.Warn("admin request refused: too many wrong credentials", "event", "admin_auth_throttled", "path", r.URL.Path, "client", r.RemoteAddr)
				return
			}
			var err error
			p, ok, err = s.principal(r.Context(), presented)
			if err != nil {
				s.fail(rec, r, "checking the token", err)
				return
			}
			if !ok {
				s.fails.fail(client, s.o.Clock.Now())
				scheme = ""
			}
		}
		if scheme == "" && r.URL.Path == "/healthz" && safeMethod(r.Method) {
			scheme = "none"
		}
		if scheme != "" {
			if ok {
				actor := audit.Actor{Who: p.Name, From: r.RemoteAddr}
				if a := r.Header.Get("Aupguard-Actor"); p.Admin && cliActor.MatchString(a) {
					actor = audit.Actor{Who: a, From: "cli"}
				}
				ctx := access.WithPrincipal(r.Context(), p, owners{s})
				r = r.WithContext(audit.WithActor(ctx, actor))
			}
			serve(rec, r, scheme)
		} else {
			// RFC 6750 §3: a challenge naming the scheme; Basic too, so a
			// browser asks for the token.
			w.Header().Add("WWW-Authenticate", `Bearer realm="aupguard"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="aupguard", charset="UTF-8"`)
			writeError(rec, http.StatusUnauthorized, "authentication required")
		}
		level := slog.LevelDebug
		if rec.status == http.StatusUnauthorized || rec.status >= 500 {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "admin request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"ms", float64(time.Since(start).Microseconds())/1000, "client", r.RemoteAddr)
	})
}
