package standing_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/checks/standing"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
)

// TestStandingAPIRefusesHostileRequests: the stops' routes on the real
// admin server: no token or a wrong one is 401; Basic credentials sent by
// another site, a CORS-safelisted media type, an oversized or malformed
// body, unknown fields, two objects, a bad scope, action, id, reason or
// end are refused, and nothing was stored; a DELETE of nothing is 404.
func TestStandingAPIRefusesHostileRequests(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(dir, "store") + `}
admin: {token_file: ` + tokenFile + `}
chain: [standing]
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	api := adminOf(t, env, tokenFile)
	good := `{"scope":"customer","id":"acme","action":"hold","reason":"review"}`
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+api.token))
	cases := []struct {
		name, method, path, auth, ctype, body string
		hdr                                   map[string]string
		want                                  int
	}{
		{"no token", "POST", "/api/standing", "", "application/json", good, nil, 401},
		{"wrong token", "POST", "/api/standing", "Bearer nope", "application/json", good, nil, 401},
		{"no token reading", "GET", "/api/standing", "", "", "", nil, 401},
		{"Basic credentials from another site", "POST", "/api/standing", basic, "application/json", good, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"cross-site resume", "DELETE", "/api/standing/customer/acme", basic, "application/json", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"form-encoded body", "POST", "/api/standing", "Bearer " + api.token, "application/x-www-form-urlencoded", "scope=customer&id=acme", nil, 415},
		{"text/plain body", "POST", "/api/standing", "Bearer " + api.token, "text/plain", good, nil, 415},
		{"oversized body", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"` + strings.Repeat("x", 8<<10) + `"}`, nil, 413},
		{"not JSON", "POST", "/api/standing", "Bearer " + api.token, "application/json", "{", nil, 400},
		{"unknown field", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"r","source":"content"}`, nil, 400},
		{"two objects", "POST", "/api/standing", "Bearer " + api.token, "application/json", good + good, nil, 400},
		{"bad scope", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"domain","id":"acme","action":"hold","reason":"r"}`, nil, 400},
		{"bad action", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"drop","reason":"r"}`, nil, 400},
		{"empty reason", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"  "}`, nil, 400},
		{"reason with CRLF (reply injection)", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"defer","reason":"x\r\n250 ok"}`, nil, 400},
		{"reason too long", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"` + strings.Repeat("x", 201) + `"}`, nil, 400},
		{"id with a space", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"a b","action":"hold","reason":"r"}`, nil, 400},
		{"id too long", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"` + strings.Repeat("a", 300) + `","action":"hold","reason":"r"}`, nil, 400},
		{"end in the past", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"r","until":"2001-01-01T00:00:00Z"}`, nil, 400},
		{"end unreadable", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"r","until":"soon"}`, nil, 400},
		{"who with a newline", "POST", "/api/standing", "Bearer " + api.token, "application/json", `{"scope":"customer","id":"acme","action":"hold","reason":"r","who":"a\nb"}`, nil, 400},
		{"PUT", "PUT", "/api/standing", "Bearer " + api.token, "application/json", good, nil, 405},
		{"resume of nothing", "DELETE", "/api/standing/customer/nobody", "Bearer " + api.token, "application/json", "", nil, 404},
		{"resume of a bad scope", "DELETE", "/api/standing/domain/acme", "Bearer " + api.token, "application/json", "", nil, 400},
		{"unknown source", "DELETE", "/api/standing/customer/acme?source=nope", "Bearer " + api.token, "application/json", "", nil, 400},
		{"bounce flag is not cleared by hand", "DELETE", "/api/standing/customer/acme?source=bounce", "Bearer " + api.token, "application/json", "", nil, 409},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, api.base+tc.path, body)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, b, tc.want)
			}
		})
	}
	if l := api.list(); len(l) != 0 {
		t.Fatalf("hostile requests stored stops: %+v", l)
	}
	// The same request, well-formed, is taken: the refusals above were
	// for what they sent.
	if code, b := api.do(http.MethodPost, "/api/standing", good); code != http.StatusCreated {
		t.Fatalf("good request: %d %s", code, b)
	}
	if e, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceManual); !ok || e.Who != "api:admin" {
		t.Fatalf("good request not listed: %+v", api.list())
	}

	// The console page: the stop listed with its resume button; the
	// suspend and resume forms work from the console's own origin with
	// their tokens, and are refused from another site or without them.
	page := func() string {
		req, _ := http.NewRequest(http.MethodGet, api.base+"/standing", nil)
		req.Header.Set("Authorization", basic)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /standing: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	html := page()
	if !strings.Contains(html, `data-scope="customer" data-id="acme" data-source="manual"`) || !strings.Contains(html, "review") {
		t.Fatalf("console page lacks the stop:\n%s", html)
	}
	token := func(action string) string {
		i := strings.Index(html, `action="`+action+`"`)
		if i < 0 {
			t.Fatalf("no form for %s", action)
		}
		rest := html[i:]
		j := strings.Index(rest, `name="csrf" value="`)
		rest = rest[j+len(`name="csrf" value="`):]
		return rest[:strings.Index(rest, `"`)]
	}
	post := func(path string, form url.Values, site string) int {
		req, _ := http.NewRequest(http.MethodPost, api.base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Authorization", basic)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", site)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	suspend := url.Values{"csrf": {token("/standing/suspend")}, "scope": {"login"}, "id": {"web@acme.example"}, "action": {"reject"}, "reason": {"Stolen password"}, "until": {"2h"}}
	if code := post("/standing/suspend", suspend, "cross-site"); code != http.StatusForbidden {
		t.Fatalf("suspend form from another site: %d, want 403", code)
	}
	noToken := url.Values{"scope": {"login"}, "id": {"web@acme.example"}, "action": {"reject"}, "reason": {"x"}}
	if code := post("/standing/suspend", noToken, "same-origin"); code != http.StatusForbidden {
		t.Fatalf("suspend form without its token: %d, want 403", code)
	}
	if _, ok := find(api.list(), standing.ScopeLogin, "web@acme.example", standing.SourceManual); ok {
		t.Fatal("a refused form stored a stop")
	}
	if code := post("/standing/suspend", suspend, "same-origin"); code != http.StatusSeeOther {
		t.Fatalf("suspend form: %d, want 303", code)
	}
	e, ok := find(api.list(), standing.ScopeLogin, "web@acme.example", standing.SourceManual)
	if !ok || e.Who != "console:admin" || e.Action != standing.ActionReject || e.Until.IsZero() {
		t.Fatalf("console stop: %+v %v", e, ok)
	}
	bad := url.Values{"csrf": {token("/standing/suspend")}, "scope": {"login"}, "id": {"x"}, "action": {"reject"}, "reason": {""}}
	if code := post("/standing/suspend", bad, "same-origin"); code != http.StatusBadRequest {
		t.Fatalf("suspend form without a reason: %d, want 400", code)
	}
	resume := url.Values{"csrf": {token("/standing/resume")}, "scope": {"customer"}, "id": {"acme"}, "source": {"manual"}}
	if code := post("/standing/resume", resume, "same-origin"); code != http.StatusSeeOther {
		t.Fatalf("resume form: %d, want 303", code)
	}
	// Every change is in the audit trail, with what it did.
	code, trail := api.do(http.MethodGet, "/api/audit?since=1h", "")
	for _, want := range []string{"standing.suspend", "login:web@acme.example", "standing.resume", "customer:acme"} {
		if code != http.StatusOK || !strings.Contains(string(trail), want) {
			t.Fatalf("audit trail lacks %q: %d %s", want, code, trail)
		}
	}
	if _, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceManual); ok {
		t.Fatal("resumed from the console but still listed")
	}
}

// TestOptoutFlagListedAndClearedThroughStanding: the opt-out escalation
// flag is listed by GET /api/standing (source optout, with its reason)
// and cleared through DELETE ?source=optout, which clears it in the
// opt-out store; a stop of the same customer is not touched.
func TestOptoutFlagListedAndClearedThroughStanding(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(dir, "store") + `}
admin: {token_file: ` + tokenFile + `}
chain: [standing]
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	api := adminOf(t, env, tokenFile)
	ob, err := optout.Open(env.Daemon.Deps().Store)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := ob.SetFlag(ctx, "acme", optout.Flag{Reason: "10 sends to opted-out recipients in 24h", Since: time.Now(), Hits: 10}); err != nil {
		t.Fatal(err)
	}
	if code, b := api.do(http.MethodPost, "/api/standing", `{"scope":"customer","id":"acme","action":"hold","reason":"review"}`); code != http.StatusCreated {
		t.Fatalf("suspend: %d %s", code, b)
	}
	e, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceOptout)
	if !ok || !e.Clearable || !strings.Contains(e.Reason, "10 sends to opted-out recipients") {
		t.Fatalf("opt-out flag not listed: %+v", api.list())
	}
	if code, b := api.do(http.MethodDelete, "/api/standing/customer/acme?source=optout", ""); code != http.StatusOK {
		t.Fatalf("clearing the opt-out flag: %d %s", code, b)
	}
	if f, err := ob.GetFlag(ctx, "acme"); err != nil || f != nil {
		t.Fatalf("opt-out flag after clearing: %+v %v", f, err)
	}
	es := api.list()
	if _, ok := find(es, standing.ScopeCustomer, "acme", standing.SourceOptout); ok {
		t.Fatalf("still listed: %+v", es)
	}
	if _, ok := find(es, standing.ScopeCustomer, "acme", standing.SourceManual); !ok {
		t.Fatalf("clearing the opt-out flag lifted the manual stop: %+v", es)
	}
	if code, _ := api.do(http.MethodDelete, "/api/standing/customer/acme?source=optout", ""); code != http.StatusNotFound {
		t.Fatalf("clearing twice: %d, want 404", code)
	}
}
