package standing_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

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
	if e, ok := find(api.list(), standing.ScopeCustomer, "acme", standing.SourceManual); !ok || e.Who != "api" {
		t.Fatalf("good request not listed: %+v", api.list())
	}
}
