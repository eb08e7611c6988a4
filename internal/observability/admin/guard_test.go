package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// guardedFixture is an admin server with the real state-changing surfaces
// on a private Redis: the live customer directory, the opt-out API
// (opt-outs, imports, complaints, flags) mounted as the daemon mounts it,
// acme flagged; every mutation that reaches a handler is counted.
type guardedFixture struct {
	e       *env
	redis   *redis.Client
	svc     *optout.Service
	reg     *prometheus.Registry
	reached atomic.Int64 // unsafe-method requests that reached a mounted handler or changed the directory
}

// countingDirectory counts the directory's changes.
type countingDirectory struct {
	Directory
	n *atomic.Int64
}

func (d countingDirectory) Add(ctx context.Context, c config.Customer, via string) (customer.Change, error) {
	d.n.Add(1)
	return d.Directory.Add(ctx, c, via)
}

func (d countingDirectory) Replace(ctx context.Context, c config.Customer, via string) (customer.Change, error) {
	d.n.Add(1)
	return d.Directory.Replace(ctx, c, via)
}

func (d countingDirectory) Set(ctx context.Context, id string, patch map[string]any, via string) (customer.Change, error) {
	d.n.Add(1)
	return d.Directory.Set(ctx, id, patch, via)
}

func (d countingDirectory) Remove(ctx context.Context, id, via string) (customer.Change, error) {
	d.n.Add(1)
	return d.Directory.Remove(ctx, id, via)
}

func (d countingDirectory) ImportFrom(ctx context.Context, src customer.ImportSource, via string) (customer.ImportResult, error) {
	d.n.Add(1)
	return d.Directory.ImportFrom(ctx, src, via)
}

// newGuardedFixture starts the fixture; extra mounts are added as given
// (routes "added later").
func newGuardedFixture(t *testing.T, extra map[string]http.Handler) *guardedFixture {
	t.Helper()
	rds := testenv.StartRedis(t, testenv.RedisOptions{})
	f := &guardedFixture{redis: rds.Client(), reg: prometheus.NewRegistry()}
	key := secrets.Key("guard-test-secret-0123456789abcdef")
	yaml := "store: {backend: redis, redis: {addrs: [" + rds.Addr() + "]}}\n" + trafficConfig
	f.e = start(t, yaml, "", func(o *Options) {
		o.Standing = nil
		o.Secret = key
		o.Registerer = f.reg
		cs, err := customer.OpenStore(o.Store)
		if err != nil {
			t.Fatal(err)
		}
		o.Directory = countingDirectory{customer.NewManager(cs, o.Config, config.Options{}, nil), &f.reached}
		api, err := optout.NewAPI(optout.APIDeps{Store: o.Store, Config: o.Config, Secret: key})
		if err != nil {
			t.Fatal(err)
		}
		counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !safeMethod(r.Method) {
				f.reached.Add(1)
			}
			api.ServeHTTP(w, r)
		})
		o.Mounts = map[string]http.Handler{"/api/optouts": counted, "/api/optouts/import": counted,
			"/api/complaints": counted, "/api/customers/{id}/flag": counted}
		for p, h := range extra {
			o.Mounts[p] = h
		}
		if f.svc, err = optout.NewService(o.Store, o.Config, key, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Backend.SetFlag(context.Background(), "acme", optout.Flag{Reason: "opted_out_sends", Since: time.Now(), Hits: 3}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.svc.Add(context.Background(), "acme", "kept@example.net", optout.SourceAPI, ""); err != nil {
			t.Fatal(err)
		}
	})
	return f
}

// digest is a digest of every key and value in the Redis database: equal
// digests, unchanged state.
func (f *guardedFixture) digest(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	if fl, ok := f.e.srv.o.Events.(flusher); ok {
		_ = fl.Flush(ctx)
	}
	keys, err := f.redis.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		v, err := f.redis.Dump(ctx, k).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%q=%x\n", k, v)
	}
	return fmt.Sprintf("%d keys %s", len(keys), hex.EncodeToString(h.Sum(nil))[:16])
}

// refusedCount reads aupguard_admin_requests_refused_total by reason.
func (f *guardedFixture) refusedCount(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "aupguard_admin_requests_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// route is a registered pattern made concrete.
type route struct {
	pattern, method, path string // method "" when the pattern has none
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// routesOf turns the server's registered patterns into requests.
func routesOf(patterns []string) []route {
	var out []route
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "", p
		}
		path = strings.ReplaceAll(path, "{$}", "")
		path = wildcard.ReplaceAllStringFunc(path, func(w string) string {
			if w == "{ref}" {
				return "DEFERRED01"
			}
			return "acme"
		})
		out = append(out, route{p, method, path})
	}
	return out
}

// unsafeMethods are tried on every route, whatever it registered.
var unsafeMethods = []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// attack is a request a page of another site can make the browser send
// (or, for the ones a browser sends only after a CORS preflight, that it
// would send if the preflight were granted).
type attack struct {
	name        string
	ctype, body string
	hdr         map[string]string
}

func attacks(evilOrigin string) []attack {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField(`{"id":"evil","networks":["0.0.0.0/0"],"domains":["evil.example"],"x":"`, `"}`)
	mw.Close()
	json := `{"id":"evil","networks":["0.0.0.0/0","::/0"],"domains":["evil.example"],"list":"acme","address":"kept@example.net"}`
	cross := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": evilOrigin}
	sameSite := map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}
	return []attack{
		{"text/plain form with a JSON body", "text/plain", json, cross},
		{"urlencoded form", "application/x-www-form-urlencoded", "list=acme&address=kept%40example.net&csrf=00", cross},
		{"multipart form", mw.FormDataContentType(), mp.String(), cross},
		{"no-cors fetch, no body", "", "", cross},
		{"JSON fetch from another site", "application/json", json, cross},
		{"JSON fetch from another port (same site)", "application/json", json, sameSite},
		{"text/plain, Origin only (no Fetch metadata)", "text/plain", json, map[string]string{"Origin": evilOrigin}},
		{"JSON, Origin null (sandboxed frame)", "application/json", json, map[string]string{"Origin": "null"}},
		{"JSON, Origin another port (no Fetch metadata)", "application/json", json, map[string]string{"Origin": "http://127.0.0.1:1"}},
		{"JSON, Basic without Fetch metadata or Origin", "application/json", json, nil},
	}
}

func basicAuth(pw string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("postmaster", pw)
	return req.Header.Get("Authorization")
}

func (e *env) raw(t *testing.T, method, path, auth, ctype, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestGuardRefusesCrossSiteOnEveryRoute takes every pattern the admin mux
// registered (its own routes, the directory, the console, the mounted
// opt-out API, and two routes "added later" through Mounts) and sends each
// unsafe method in each form a hostile page can produce, with the
// browser's Basic credentials: every one is refused with 403 before any
// handler runs, the store is unchanged, and each refusal is counted.
func TestGuardRefusesCrossSiteOnEveryRoute(t *testing.T) {
	t0 := time.Now()
	var later atomic.Int64
	laterH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { later.Add(1) })
	f := newGuardedFixture(t, map[string]http.Handler{"/api/added-later": laterH, "POST /added-later-form": laterH})
	e := f.e
	routes := routesOf(e.srv.patterns)
	for _, want := range []string{"POST /api/customers", "PUT /api/customers/{id}", "PATCH /api/customers/{id}", "DELETE /api/customers/{id}",
		"POST /api/customers/import", "/api/optouts", "/api/optouts/import", "/api/complaints", "/api/customers/{id}/flag",
		"POST /customers/{id}/clear-flag", "/api/added-later", "POST /added-later-form", "GET /{$}", "GET /metrics"} {
		found := false
		for _, r := range routes {
			found = found || r.pattern == want
		}
		if !found {
			t.Fatalf("pattern %q not registered: %v", want, e.srv.patterns)
		}
	}
	before := f.digest(t)
	auth := basicAuth(testToken)
	tried := 0
	for _, rt := range routes {
		for _, m := range unsafeMethods {
			for _, a := range attacks("http://evil.example") {
				code, body := e.raw(t, m, rt.path, auth, a.ctype, a.body, a.hdr)
				tried++
				if code != http.StatusForbidden || !strings.Contains(body, "cross-site request refused") {
					t.Errorf("%s %s (%s), %s: %d %s, want 403 cross-site", m, rt.path, rt.pattern, a.name, code, body)
				}
			}
		}
	}
	if n := f.reached.Load() + later.Load(); n != 0 {
		t.Errorf("%d refused requests reached a handler", n)
	}
	if after := f.digest(t); after != before {
		t.Errorf("state changed by refused requests: %s → %s", before, after)
	}
	if got := f.refusedCount(t)[refusedCrossSite]; got != float64(tried) {
		t.Errorf("refused counted %v, want %d", got, tried)
	}
	t.Logf("%d routes × %d methods × %d forms: %d cross-site requests, %d reached a handler", len(routes), len(unsafeMethods), len(attacks("")), tried, f.reached.Load()+later.Load())
	logs := e.log.String()
	if !strings.Contains(logs, `"msg":"admin request refused"`) || !strings.Contains(logs, `"reason":"cross_site"`) {
		t.Errorf("no refusal log line")
	}
	// The log is bounded under a flood: a burst, then one a second, the
	// rest counted.
	if n := strings.Count(logs, `"msg":"admin request refused"`); n > refusalBurst+int(time.Since(t0).Seconds())+1 {
		t.Errorf("%d refusal lines for %d refusals: not bounded", n, tried)
	}
	if strings.Contains(logs, testToken) {
		t.Error("token in the log")
	}
}

// TestGuardAdmitsTheRightCallers pins what is let through: an API write
// with a bearer token and its media type (the CLI, curl), one from the
// admin page's own origin with Basic credentials, a console form from
// its own origin with its anti-CSRF token; and what is still refused for
// a right caller: a wrong media type (415), a missing, forged, stale or
// other form's token (403).
func TestGuardAdmitsTheRightCallers(t *testing.T) {
	f := newGuardedFixture(t, nil)
	e := f.e
	bearer := "Bearer " + testToken
	basic := basicAuth(testToken)
	same := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.url}
	originOnly := map[string]string{"Origin": e.url}
	csv := "address\nnew1@example.net\n"
	tests := []struct {
		name, method, path, auth, ctype, body string
		hdr                                   map[string]string
		code                                  int
	}{
		{"bearer JSON add customer", "POST", "/api/customers", bearer, "application/json", `{"id":"newco","networks":["203.0.113.0/24"],"domains":["newco.example"]}`, nil, 201},
		{"bearer JSON with charset", "PATCH", "/api/customers/newco", bearer, "application/json; charset=utf-8", `{"name":"New Co"}`, nil, 200},
		{"bearer text/plain", "PATCH", "/api/customers/newco", bearer, "text/plain", `{"name":"X"}`, nil, 415},
		{"bearer no content type", "DELETE", "/api/customers/newco", bearer, "", "", nil, 415},
		{"bearer JSON-like type", "POST", "/api/optouts", bearer, "application/jsonx", `{"list":"acme","address":"x@example.net"}`, nil, 415},
		{"bearer YAML import", "POST", "/api/customers/import", bearer, "application/yaml", "customers:\n  - {id: i1, networks: [10.0.0.1], domains: [i1.example]}\n", nil, 200},
		{"bearer CSV import", "POST", "/api/optouts/import?list=acme", bearer, "text/csv", csv, nil, 200},
		{"bearer CSV import as text/plain", "POST", "/api/optouts/import?list=acme", bearer, "text/plain", csv, nil, 415},
		{"bearer complaint as form", "POST", "/api/complaints", bearer, "application/x-www-form-urlencoded", "a=b", nil, 415},
		{"same-origin Basic JSON", "POST", "/api/optouts", basic, "application/json", `{"list":"acme","address":"same@example.net"}`, same, 201},
		{"Origin-only Basic JSON", "POST", "/api/optouts", basic, "application/json", `{"list":"acme","address":"origin@example.net"}`, originOnly, 201},
		{"same-origin Basic text/plain", "POST", "/api/optouts", basic, "text/plain", `{"list":"acme","address":"tp@example.net"}`, same, 415},
		{"Origin with a path", "POST", "/api/optouts", basic, "application/json", `{"list":"acme","address":"p@example.net"}`, map[string]string{"Origin": e.url + "/x"}, 403},
		{"Origin https for a plain-HTTP server", "POST", "/api/optouts", basic, "application/json", `{"list":"acme","address":"s@example.net"}`, map[string]string{"Origin": "https://" + e.srv.Addr().String()}, 403},
		{"Sec-Fetch-Site decides over Origin", "POST", "/api/optouts", basic, "application/json", `{"list":"acme","address":"d@example.net"}`, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": e.url}, 403},
		{"form without token", "POST", "/customers/acme/clear-flag", basic, "application/x-www-form-urlencoded", "", same, 403},
		{"form with a forged token", "POST", "/customers/acme/clear-flag", basic, "application/x-www-form-urlencoded", "csrf=" + strings.Repeat("0", 64), same, 403},
		{"form with beta's token", "POST", "/customers/acme/clear-flag", basic, "application/x-www-form-urlencoded", "csrf=" + f.token(basic, "/customers/beta/clear-flag"), same, 403},
		{"form with another login's token", "POST", "/customers/acme/clear-flag", basic, "application/x-www-form-urlencoded", "csrf=" + f.token(basicAuth("x"+testToken), "/customers/acme/clear-flag"), same, 403},
		{"form as multipart", "POST", "/customers/acme/clear-flag", basic, "multipart/form-data; boundary=x", "--x--\r\n", same, 415},
		{"form from another site with its token", "POST", "/customers/acme/clear-flag", basic, "application/x-www-form-urlencoded", "csrf=" + f.token(basic, "/customers/acme/clear-flag"), map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"form with bearer but no origin", "POST", "/customers/acme/clear-flag", bearer, "application/x-www-form-urlencoded", "csrf=" + f.token(bearer, "/customers/acme/clear-flag"), nil, 403},
		{"form same-origin with its token", "POST", "/customers/acme/clear-flag", basic, "application/x-www-form-urlencoded", "csrf=" + f.token(basic, "/customers/acme/clear-flag"), same, 303},
		{"bearer DELETE with JSON type", "DELETE", "/api/customers/newco", bearer, "application/json", "", nil, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.raw(t, tc.method, tc.path, tc.auth, tc.ctype, tc.body, tc.hdr)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
		})
	}
	st, err := f.svc.Status(context.Background(), "acme")
	if err != nil || st.Flag != nil {
		t.Errorf("the console's form did not clear the flag: %v %+v", err, st.Flag)
	}
	n, _ := f.svc.Backend.Len(context.Background(), "acme")
	if n != 4 { // kept, new1, same, origin
		t.Errorf("acme's list has %d entries, want 4", n)
	}
	c := f.refusedCount(t)
	if c[refusedMediaType] != 7 || c[refusedCSRF] != 4 || c[refusedCrossSite] != 5 {
		t.Errorf("refusals counted %v", c)
	}
}

// token is the form token the server renders for a page requested with
// auth.
func (f *guardedFixture) token(auth, path string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", auth)
	return f.e.srv.formToken(req, path)
}

// TestSafeMethodsChangeNothing reads every GET route (and HEAD) the mux
// registered, the console pages included, and checks that the store is
// byte for byte unchanged: a cross-site GET (which the guard lets
// through, as browsers send them freely) can change nothing.
func TestSafeMethodsChangeNothing(t *testing.T) {
	f := newGuardedFixture(t, nil)
	e := f.e
	f.digest(t) // the recorder's first flush
	before := f.digest(t)
	n := 0
	for _, rt := range routesOf(e.srv.patterns) {
		if rt.method != "" && rt.method != "GET" {
			continue
		}
		for _, m := range []string{"GET", "HEAD"} {
			for _, q := range []string{"", "?list=acme&address=kept@example.net&customer=acme&ref=DEFERRED01&since=7d"} {
				code, body := e.raw(t, m, rt.path+q, basicAuth(testToken), "", "", map[string]string{"Sec-Fetch-Site": "cross-site"})
				if code >= 500 {
					t.Errorf("%s %s%s: %d %s", m, rt.path, q, code, body)
				}
				n++
			}
		}
	}
	if after := f.digest(t); after != before {
		t.Errorf("GET/HEAD changed the store: %s → %s", before, after)
	}
	if f.reached.Load() != 0 {
		t.Errorf("a GET reached a directory change")
	}
	t.Logf("%d GET/HEAD requests over every read route: store unchanged (%s)", n, before)
}

// TestNoScriptOnTheAdminOrigin checks that every response of the admin
// server (pages, JSON, reports, errors, the 401) forbids script and
// framing: script of the admin origin would be same-origin, which the
// guard trusts.
func TestNoScriptOnTheAdminOrigin(t *testing.T) {
	e := start(t, adminConfig, "", nil)
	for _, p := range []string{"/", "/healthz", "/api/report?format=html", "/api/customers", "/customers/acme", "/decisions", "/nosuch"} {
		for _, auth := range []string{"Bearer " + testToken, ""} {
			_, _, hdr := e.do(t, "GET", p, auth)
			csp := hdr.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || !strings.Contains(csp, "frame-ancestors 'none'") ||
				hdr.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s (auth %v): CSP %q, nosniff %q", p, auth != "", csp, hdr.Get("X-Content-Type-Options"))
			}
		}
	}
}
