package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/secrets"
)

// The cross-site guard. A browser that holds the admin token as its Basic
// credentials sends it with every request to the admin origin, whoever
// started the request: a page of another site can auto-submit a form (or
// call fetch with no-cors) and act as the postmaster. So every request
// whose method is not GET or HEAD passes one middleware, in front of the
// whole mux (a route added later is covered without a line of its own):
//
//   - API writes (paths under /api/) need a bearer token, or a request the
//     browser marks as coming from the admin origin itself (Fetch metadata
//     Sec-Fetch-Site: same-origin or none; without it, an Origin equal to
//     the server's own). Basic credentials from another origin never
//     authorise a write. The body must carry the route's media type:
//     application/json, or the import formats named in bodyTypes; none is
//     one a cross-site form or a no-cors fetch can send (the CORS-safelisted
//     types text/plain, application/x-www-form-urlencoded and
//     multipart/form-data are refused).
//   - Console forms (every other path) need the same-origin check, an
//     application/x-www-form-urlencoded body, and the form's anti-CSRF
//     token: an HMAC, under the gateway's secret, of the request's
//     credentials and the form's action path (formToken).
//
// A refusal is 403 (415 for a wrong media type) with a short reason, one
// log line (at most a burst of refusalBurst, then one a second, the
// rest counted in the next line) and aupguard_admin_requests_refused_total
// by reason. GET and HEAD handlers change nothing (TestSafeMethodsChangeNothing).

// Refusal reasons (the metric's label values).
const (
	refusedCrossSite = "cross_site"
	refusedMediaType = "media_type"
	refusedCSRF      = "csrf_token"
)

// formField is the console forms' anti-CSRF field.
const formField = "csrf"

// maxFormBody bounds a console form's body (it has a token and a few
// fields).
const maxFormBody = 64 << 10

// bodyTypes are the media types a write accepts beyond application/json,
// by ServeMux pattern (as registered).
var bodyTypes = map[string][]string{
	"POST /api/customers/import": {"application/json", "application/x-ndjson", "application/yaml"},
	"/api/optouts/import":        {"text/csv"},
	"/api/complaints":            {"message/rfc822"},
	"/api/explain":               {"message/rfc822"},
}

// safeMethod reports whether a method is read-only (RFC 9110 §9.2.1) and
// exempt from the guard.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// guard is the state of the cross-site middleware.
type guard struct {
	key     []byte // form tokens: the gateway's secret, or a key of this process
	refused *prometheus.CounterVec

	mu         sync.Mutex
	tokens     float64 // refusal log lines that may be written now
	last       time.Time
	suppressed int
}

// refusalBurst is the number of refusal lines logged at once; after it,
// one a second.
const refusalBurst = 20

func newGuard(secret secrets.Key) *guard {
	g := &guard{tokens: refusalBurst}
	if len(secret) > 0 {
		g.key = secret
	} else {
		// No secret given (tests, tools): a key for this process; forms
		// rendered before a restart are then refused, and re-rendered.
		g.key = make([]byte, 32)
		if _, err := rand.Read(g.key); err != nil {
			panic("admin: no randomness: " + err.Error())
		}
	}
	g.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aupguard_admin_requests_refused_total",
		Help: "State-changing admin requests refused by the cross-site guard, by reason (cross_site, media_type, csrf_token)."}, []string{"reason"})
	for _, r := range []string{refusedCrossSite, refusedMediaType, refusedCSRF} {
		g.refused.WithLabelValues(r)
	}
	return g
}

// formToken is the anti-CSRF token of the console form posting to path,
// for the credentials the request presents (its Authorization header:
// one browser's login, the "session" of Basic authentication).
func (s *Server) formToken(r *http.Request, path string) string {
	cred := sha256.Sum256([]byte(strings.TrimSpace(r.Header.Get("Authorization"))))
	m := hmac.New(sha256.New, s.guard.key)
	m.Write([]byte("admin-form\x00"))
	m.Write(cred[:])
	m.Write([]byte("\x00" + path))
	return hex.EncodeToString(m.Sum(nil))
}

// sameOrigin reports whether the browser says the request comes from the
// admin origin itself: Sec-Fetch-Site same-origin, or none (the user typed
// the address); a browser without Fetch metadata is judged by Origin,
// which must be the server's own. A request with neither (not a browser)
// is not same-origin.
func (s *Server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	switch u.Scheme {
	case "https":
		// Served with TLS, or behind a TLS-terminating proxy.
		if !s.tls && !s.cfg.Load().Admin.InsecurePlaintext {
			return false
		}
	case "http":
		if s.tls {
			return false
		}
	default:
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// mediaTypeOK reports whether the request's Content-Type is one of want
// (parameters such as charset allowed, the media type exact).
func mediaTypeOK(r *http.Request, want []string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	for _, w := range want {
		if mt == w {
			return true
		}
	}
	return false
}

// guarded wraps next (the mux) with the cross-site guard; scheme is the
// request's authentication scheme ("bearer" or "basic"), set by the
// authentication layer.
func (s *Server) guarded(mux *http.ServeMux) func(w http.ResponseWriter, r *http.Request, scheme string) {
	return func(w http.ResponseWriter, r *http.Request, scheme string) {
		// A scoped token on a route that is the admin's alone gets the
		// uniform 404 before anything else is said about the route (its
		// media type, its form token).
		if p, ok := access.FromContext(r.Context()); ok && !p.Admin {
			if _, pattern := mux.Handler(r); pattern != "" && s.scopes[pattern] == nil {
				notFound(w)
				return
			}
		}
		if safeMethod(r.Method) {
			mux.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/api/") {
			if scheme != "bearer" && !s.sameOrigin(r) {
				s.refuse(w, r, http.StatusForbidden, refusedCrossSite, "cross-site request refused: API writes need a bearer token or the admin page's own origin")
				return
			}
			want := []string{"application/json"}
			if _, pattern := mux.Handler(r); bodyTypes[pattern] != nil {
				want = bodyTypes[pattern]
			}
			if !mediaTypeOK(r, want) {
				s.refuse(w, r, http.StatusUnsupportedMediaType, refusedMediaType, "Content-Type must be "+strings.Join(want, " or "))
				return
			}
			mux.ServeHTTP(w, r)
			return
		}
		// A console form.
		if !s.sameOrigin(r) {
			s.refuse(w, r, http.StatusForbidden, refusedCrossSite, "cross-site request refused")
			return
		}
		if !mediaTypeOK(r, []string{"application/x-www-form-urlencoded"}) {
			s.refuse(w, r, http.StatusUnsupportedMediaType, refusedMediaType, "Content-Type must be application/x-www-form-urlencoded")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil ||
			!hmac.Equal([]byte(r.PostForm.Get(formField)), []byte(s.formToken(r, r.URL.Path))) {
			s.refuse(w, r, http.StatusForbidden, refusedCSRF, "stale or forged form: reload the page")
			return
		}
		mux.ServeHTTP(w, r)
	}
}

// refuse answers a refused request, logs it (rate-bounded) and counts it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	g := s.guard
	g.refused.WithLabelValues(reason).Inc()
	writeError(w, code, msg)
	now := s.o.Clock.Now()
	g.mu.Lock()
	if !g.last.IsZero() {
		g.tokens = min(refusalBurst, g.tokens+now.Sub(g.last).Seconds())
	}
	g.last = now
	logIt := g.tokens >= 1
	suppressed := 0
	if logIt {
		g.tokens--
		suppressed, g.suppressed = g.suppressed, 0
	} else {
		g.suppressed++
	}
	g.mu.Unlock()
	if !logIt {
		return
	}
	s.log.Warn("admin request refused", "event", "admin_refused", "reason", reason, "method", r.Method, "path", r.URL.Path,
		"client", r.RemoteAddr, "fetch_site", clip(r.Header.Get("Sec-Fetch-Site")), "origin", clip(r.Header.Get("Origin")),
		"content_type", clip(r.Header.Get("Content-Type")), "suppressed_before", suppressed)
}

// clip bounds a header value quoted in the log.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
