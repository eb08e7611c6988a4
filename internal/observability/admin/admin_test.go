package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/observability/metrics"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

const testToken = "0123456789abcdef-admin-token-XYZ"

const adminConfig = `
provider: {postmaster: postmaster@provider.example}
customers:
  - id: acme
    name: Acme Corp
    abuse_contact: abuse@acme.example
    networks: [192.0.2.0/24]
    domains: [acme.example]
  - id: beta
    networks: [198.51.100.0/24]
    domains: [beta.example]
    mode: monitor
`

type env struct {
	srv  *Server
	url  string
	log  *testenv.LogBuffer
	rec  *events.Recorder
	cfg  *config.Config
	stop func()
}

// start runs an admin server on loopback with recorded decisions; mod
// adjusts the options.
func start(t testing.TB, yaml, adminExtra string, mod func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte("admin: {listen: 127.0.0.1:0, token_file: "+tokFile+adminExtra+"}\n"+yaml), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cfg.Events.File = "off"
	rec, err := events.New(h, cfg.Events, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	spike := policy.Result{Check: "rate_limit", Finding: policy.Finding{Name: "volume_spike"}, Action: policy.Defer}
	for _, d := range []*gateway.Decision{
		{Time: now.Add(-time.Hour), Stage: gateway.StageEOM, Ref: "ACCEPTED01", Customer: "acme", Login: "alice@acme.example", Rcpts: 2, Size: 500, Action: policy.Accept, Effective: policy.Accept, Mode: "enforce"},
		{Time: now.Add(-50 * time.Minute), Stage: gateway.StageMail, Ref: "DEFERRED01", Customer: "acme", Action: policy.Defer, Effective: policy.Defer,
			Check: "rate_limit", Finding: "volume_spike", Code: 451, Enhanced: "4.7.1", Mode: "enforce", Results: []policy.Result{spike}},
		{Time: now.Add(-40 * time.Minute), Stage: gateway.StageEOM, Ref: "MONITOR001", Customer: "beta", Rcpts: 1, Size: 300, Action: policy.Reject, Effective: policy.Accept,
			Check: "sender_identity", Finding: "from_domain_not_owned", Mode: "monitor"},
	} {
		rec.Observe(d)
	}
	m := metrics.New(metrics.Options{TopCustomers: 5})
	log := &testenv.LogBuffer{}
	o := Options{
		Config: cfg, Store: h, Events: rec, Gatherer: m.Registry(),
		Ready: func(context.Context) error { return nil },
		Quota: func(_ context.Context, id string) (any, error) {
			return map[string]any{"customer": id, "limits": []string{"messages_per_hour"}}, nil
		},
		Standing: func(_ context.Context, id string) (*optout.CustomerStatus, error) {
			return &optout.CustomerStatus{Customer: id, RateLevel: "low_volume"}, nil
		},
		Mounts: map[string]http.Handler{
			"/api/optouts":             http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("optouts")) }),
			"/api/customers/{id}/flag": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("flag " + r.PathValue("id"))) }),
		},
		Logger: slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	e := &env{srv: s, url: "http://" + s.Addr().String(), log: log, rec: rec, cfg: cfg}
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
	return e
}

func (e *env) do(t testing.TB, method, path, auth string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if !safeMethod(method) {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// protected lists every route behind the token (and some that exist nowhere).
var protected = []struct{ method, path string }{
	{"GET", "/"},
	{"GET", "/?since=7d"},
	{"GET", "/readyz"},
	{"GET", "/metrics"},
	{"GET", "/api/customers"},
	{"GET", "/api/customers/acme"},
	{"GET", "/api/customers/acme/quota"},
	{"GET", "/api/events"},
	{"GET", "/api/events?ref=DEFERRED01"},
	{"GET", "/api/events/DEFERRED01"},
	{"GET", "/api/report"},
	{"GET", "/api/report?format=html"},
	{"GET", "/api/optouts"},
	{"POST", "/api/optouts"},
	{"DELETE", "/api/customers/acme/flag"},
	{"GET", "/api/customers/acme/flag"},
	{"GET", "/nosuchpath"},
	{"GET", "/healthz/../metrics"},
}

func TestAuthEveryEndpoint(t *testing.T) {
	// Every wrong credential of this test comes from one client: the
	// brute-force bound (TestTokenBruteForceThrottled) is raised.
	e := start(t, adminConfig, "", func(o *Options) { o.AuthFailBurst = 1 << 20 })
	basic := func(user, pw string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, pw)
		return req.Header.Get("Authorization")
	}
	refused := []struct{ name, auth string }{
		{"no token", ""},
		{"wrong token", "Bearer wrong-token-0123456789abcdef"},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
		{"token with suffix", "Bearer " + testToken + "x"},
		{"empty bearer", "Bearer "},
		{"wrong scheme", "Token " + testToken},
		{"bare token", testToken},
		{"basic wrong password", basic("admin", "nope")},
		{"basic token as user", basic(testToken, "")},
		{"basic garbage", "Basic !!!"},
	}
	for _, a := range refused {
		for _, rt := range protected {
			t.Run(a.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				code, _, hdr := e.do(t, rt.method, rt.path, a.auth)
				if code != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", code)
				}
				if !strings.Contains(strings.Join(hdr.Values("WWW-Authenticate"), ","), "Bearer") {
					t.Fatalf("no Bearer challenge: %v", hdr)
				}
			})
		}
	}
	for _, a := range []struct{ name, auth string }{{"bearer", "Bearer " + testToken}, {"basic", basic("postmaster", testToken)}} {
		for _, rt := range protected {
			t.Run("accepted "+a.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				code, body, _ := e.do(t, rt.method, rt.path, a.auth)
				if code == http.StatusUnauthorized {
					t.Fatalf("status 401 with the right token: %s", body)
				}
			})
		}
	}
	t.Run("healthz needs no token", func(t *testing.T) {
		if code, body, _ := e.do(t, "GET", "/healthz", ""); code != 200 || body != "ok\n" {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("token never logged", func(t *testing.T) {
		logs := e.log.String()
		if !strings.Contains(logs, `"status":401`) || !strings.Contains(logs, `"path":"/api/customers"`) {
			t.Fatalf("access log missing: %s", logs)
		}
		for _, secret := range []string{testToken, testToken[:16], "wrong-token-0123456789abcdef", basic("postmaster", testToken)[6:]} {
			if strings.Contains(logs, secret) {
				t.Fatalf("log contains a credential %q", secret)
			}
		}
	})
}

func TestDisabledAndBadToken(t *testing.T) {
	cfg, err := config.Parse([]byte(adminConfig), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Config: cfg}); !errors.Is(err, ErrDisabled) {
		t.Fatalf("no token file: %v, want ErrDisabled", err)
	}
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	cfg.Admin.TokenFile = short
	if _, err := New(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("short token: %v", err)
	}
	cfg.Admin.TokenFile = filepath.Join(dir, "missing")
	if _, err := New(Options{Config: cfg}); err == nil {
		t.Fatal("missing token file accepted")
	}
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte(testToken), 0o644)
	cfg.Admin.TokenFile, cfg.Admin.Listen = open, "127.0.0.1:0"
	var log testenv.LogBuffer
	s, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown(context.Background())
	s.ln.Close()
	if !strings.Contains(log.String(), "readable by group or others") || strings.Contains(log.String(), testToken) {
		t.Fatalf("log: %s", log.String())
	}
}

func getJSON(t *testing.T, e *env, path string, v any) int {
	t.Helper()
	code, body, hdr := e.do(t, "GET", path, "Bearer "+testToken)
	if code == 200 && !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("%s: content type %q", path, hdr.Get("Content-Type"))
	}
	if v != nil && code == 200 {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
	}
	return code
}

func TestAPI(t *testing.T) {
	e := start(t, adminConfig, "", nil)
	t.Run("events by ref", func(t *testing.T) {
		var out struct{ Events []events.Event }
		if code := getJSON(t, e, "/api/events/deferred01", &out); code != 200 || len(out.Events) != 1 ||
			out.Events[0].Check != "rate_limit" || out.Events[0].Code != 451 {
			t.Fatalf("%d %+v", code, out)
		}
		if code := getJSON(t, e, "/api/events/NOSUCHREF0", nil); code != 404 {
			t.Fatalf("unknown ref: %d", code)
		}
	})
	t.Run("events query", func(t *testing.T) {
		var out struct{ Events []events.Event }
		if code := getJSON(t, e, "/api/events?customer=acme&since=2h", &out); code != 200 || len(out.Events) != 2 || out.Events[0].Ref != "DEFERRED01" {
			t.Fatalf("%d %+v", code, out)
		}
		if code := getJSON(t, e, "/api/events?limit=1", &out); code != 200 || len(out.Events) != 1 {
			t.Fatalf("%d %+v", code, out)
		}
		if code := getJSON(t, e, "/api/events?login=alice@acme.example", &out); code != 200 || len(out.Events) != 1 || out.Events[0].Ref != "ACCEPTED01" || out.Events[0].Login != "alice@acme.example" {
			t.Fatalf("by login: %d %+v", code, out)
		}
		if code := getJSON(t, e, "/api/events?customer=acme&login=nobody", &out); code != 200 || len(out.Events) != 0 {
			t.Fatalf("unknown login: %d %+v", code, out)
		}
		for _, bad := range []string{"/api/events?limit=0", "/api/events?since=x", "/api/events?since=1h&from=2026-01-01"} {
			if code := getJSON(t, e, bad, nil); code != 400 {
				t.Errorf("%s: %d, want 400", bad, code)
			}
		}
	})
	t.Run("customers", func(t *testing.T) {
		var out struct{ Customers []customerInfo }
		if code := getJSON(t, e, "/api/customers", &out); code != 200 || len(out.Customers) != 2 {
			t.Fatalf("%d %+v", code, out)
		}
		acme := out.Customers[0]
		if acme.ID != "acme" || acme.Name != "Acme Corp" || acme.Last24h == nil || acme.Last24h.Messages != 2 || acme.Last24h.Deferred != 1 {
			t.Fatalf("acme %+v %+v", acme, acme.Last24h)
		}
		if b := out.Customers[1]; b.Mode != "monitor" || b.Last24h.WouldRefuse != 1 {
			t.Fatalf("beta %+v", b)
		}
	})
	t.Run("customer", func(t *testing.T) {
		var out map[string]json.RawMessage
		if code := getJSON(t, e, "/api/customers/acme", &out); code != 200 || out["quota"] == nil || out["standing"] == nil || out["customer"] == nil {
			t.Fatalf("%d %v", code, out)
		}
		if code := getJSON(t, e, "/api/customers/nobody", nil); code != 404 {
			t.Fatalf("unknown customer: %d", code)
		}
		if code := getJSON(t, e, "/api/customers/acme/quota", &out); code != 200 || string(out["customer"]) != `"acme"` {
			t.Fatalf("quota: %d %v", code, out)
		}
	})
	t.Run("report", func(t *testing.T) {
		var out struct {
			Totals    map[string]int64
			Customers []struct{ ID string }
		}
		if code := getJSON(t, e, "/api/report?since=24h", &out); code != 200 || out.Totals["messages"] != 3 || out.Totals["deferred"] != 1 || out.Totals["monitor_would_refuse"] != 1 {
			t.Fatalf("%d %+v", code, out)
		}
		code, body, hdr := e.do(t, "GET", "/api/report?format=csv&customer=acme", "Bearer "+testToken)
		if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") || !strings.Contains(body, "\nacme,Acme Corp,2,") {
			t.Fatalf("csv %d %s", code, body)
		}
		if code := getJSON(t, e, "/api/report?format=pdf", nil); code != 400 {
			t.Fatalf("bad format: %d", code)
		}
	})
	t.Run("mounts", func(t *testing.T) {
		code, body, _ := e.do(t, "DELETE", "/api/customers/acme/flag", "Bearer "+testToken)
		if code != 200 || body != "flag acme" {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		code, body, _ := e.do(t, "GET", "/metrics", "Bearer "+testToken)
		if code != 200 || !strings.Contains(body, "aupguard_milter_sessions_active") {
			t.Fatalf("%d %.300s", code, body)
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		code, body, hdr := e.do(t, "GET", "/?since=6h", "Bearer "+testToken)
		if code != 200 || !strings.Contains(body, `<svg id="volume-chart"`) || !strings.Contains(body, `class="current">last 6h`) ||
			!strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") || strings.Contains(body, "http-equiv=\"refresh\"") {
			t.Fatalf("%d %v %.500s", code, hdr, body)
		}
	})
}

func TestReadyAndFailures(t *testing.T) {
	e := start(t, adminConfig, ", dashboard_refresh: 30s", func(o *Options) {
		o.Ready = func(context.Context) error { return errors.New("redis: connection refused") }
		o.Quota = func(context.Context, string) (any, error) { return nil, store.ErrUnavailable }
	})
	if code := getJSON(t, e, "/readyz", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz: %d", code)
	}
	if code := getJSON(t, e, "/api/customers/acme/quota", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("quota with store down: %d", code)
	}
	var out map[string]any
	if code := getJSON(t, e, "/api/customers/acme", &out); code != 200 || out["errors"] == nil {
		t.Fatalf("customer with quota down: %d %v", code, out)
	}
	if _, body, _ := e.do(t, "GET", "/", "Bearer "+testToken); !strings.Contains(body, `<meta http-equiv="refresh" content="30">`) {
		t.Fatal("no meta refresh")
	}
}

// TestReadyzComponents: a component that is behind (the delivery-log
// reader) makes /readyz say "degraded" with its detail, still 200: mail
// flows, what the component feeds is stale. A failed dependency is 503
// and the detail is still shown.
func TestReadyzComponents(t *testing.T) {
	var degraded atomic.Value
	degraded.Store("")
	var down atomic.Bool
	e := start(t, adminConfig, "", func(o *Options) {
		o.Components = func() []Component {
			return []Component{{Name: "delivery_log", Degraded: degraded.Load().(string), Detail: map[string]any{"state": "retrying", "lag_seconds": 42}}}
		}
		o.Ready = func(context.Context) error {
			if down.Load() {
				return errors.New("redis: connection refused")
			}
			return nil
		}
	})
	var out map[string]any
	if code := getJSON(t, e, "/readyz", &out); code != 200 || out["status"] != "ready" || out["delivery_log"] == nil {
		t.Fatalf("%d %v", code, out)
	}
	degraded.Store("delivery log unreadable (permission)")
	out = nil
	if code := getJSON(t, e, "/readyz", &out); code != 200 || out["status"] != "degraded" ||
		fmt.Sprint(out["degraded"]) != "[delivery_log: delivery log unreadable (permission)]" || fmt.Sprint(out["delivery_log"]) != "map[lag_seconds:42 state:retrying]" {
		t.Fatalf("%d %v", code, out)
	}
	down.Store(true)
	if code, body, _ := e.do(t, "GET", "/readyz", "Bearer "+testToken); code != http.StatusServiceUnavailable || !strings.Contains(body, `"status": "unavailable"`) || !strings.Contains(body, `"delivery_log"`) {
		t.Fatalf("%d %s", code, body)
	}
}
