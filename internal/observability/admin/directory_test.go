package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/store"
)

func (e *env) send(t testing.TB, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	if !safeMethod(method) {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not JSON: %s", method, path, b)
	}
	return resp.StatusCode, m
}

func TestDirectoryAPI(t *testing.T) {
	var dir *customer.Manager
	e := start(t, adminConfig, "", func(o *Options) {
		h, err := store.Open(config.StoreConfig{Backend: "memory"}, clock.System{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		s, _ := customer.OpenStore(h)
		dir = customer.NewManager(s, o.Config, config.Options{}, nil)
		o.Directory = dir
	})
	for _, rt := range []struct{ method, path string }{{"POST", "/api/customers"}, {"PATCH", "/api/customers/acme"}, {"DELETE", "/api/customers/acme"}, {"GET", "/api/directory"}, {"GET", "/api/changes"}} {
		if code, _, _ := e.do(t, rt.method, rt.path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without token: %d", rt.method, rt.path, code)
		}
	}
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     []string // substrings of the JSON answer
	}{
		{"add", "POST", "/api/customers", `{"id": "newco", "networks": ["203.0.113.0/24"], "domains": ["newco.example"], "limits": {"messages_per_hour": 10}}`, 201, []string{`"op":"add"`, `"via":"api"`}},
		{"add again", "POST", "/api/customers", `{"id": "newco", "networks": ["203.0.114.0/24"], "domains": ["newco.example"]}`, 400, []string{"already exists"}},
		{"field errors", "POST", "/api/customers", `{"id": "bad", "logins": ["[x"], "networks": ["203.0.113.0/24"], "domains": ["bad domain"], "limits": {"messages_per_day": -5}}`, 400,
			[]string{`"field":"logins[0]"`, `"field":"networks[0]"`, `"field":"domains[0]"`, `"field":"limits.messages_per_day"`}},
		{"unknown field", "POST", "/api/customers", `{"id": "x", "colour": "blue"}`, 400, []string{`"field":"colour"`, "unknown field"}},
		{"not JSON", "POST", "/api/customers", `{"id": `, 400, []string{"invalid customer definition"}},
		{"patch", "PATCH", "/api/customers/newco", `{"limits": {"messages_per_hour": null, "messages_per_day": 100}, "mode": "monitor"}`, 200, []string{`"op":"set"`, `"limits"`, `"mode"`}},
		{"patch bad value", "PATCH", "/api/customers/newco", `{"mode": "sometimes"}`, 400, []string{`"field":"mode"`}},
		{"patch id", "PATCH", "/api/customers/newco", `{"id": "other"}`, 400, []string{"cannot be changed"}},
		{"patch unknown", "PATCH", "/api/customers/nosuch", `{"mode": "monitor"}`, 404, nil},
		{"put config customer", "PUT", "/api/customers/beta", `{"networks": ["198.51.100.0/24"], "domains": ["beta.example", "beta.test"]}`, 200, []string{`"op":"set"`}},
		{"put id mismatch", "PUT", "/api/customers/beta", `{"id": "gamma", "networks": ["198.51.100.0/24"], "domains": ["beta.example"]}`, 400, []string{"differs"}},
		{"definition", "GET", "/api/customers/beta/definition", "", 200, []string{`"source":"store"`, `"shadows_config":true`, "beta.test"}},
		{"definition config", "GET", "/api/customers/acme/definition", "", 200, []string{`"source":"config"`}},
		{"import", "POST", "/api/customers/import", "customers:\n  - {id: i1, networks: [10.0.0.1], domains: [i1.example]}\n  - {id: i2, networks: [10.0.0.2], domains: [i2.example]}\n", 200, []string{`"imported":2`}},
		{"import conflict", "POST", "/api/customers/import", `{"customers": [{"id": "i3", "networks": ["10.0.0.1"], "domains": ["i3.example"]}]}`, 400, []string{`"customer":"i3"`, `"field":"networks[0]"`}},
		{"remove config customer", "DELETE", "/api/customers/acme", "", 400, []string{"config file"}},
		{"remove", "DELETE", "/api/customers/newco", "", 200, []string{`"op":"remove"`}},
		{"remove again", "DELETE", "/api/customers/newco", "", 404, nil},
		{"list", "GET", "/api/directory", "", 200, []string{`"precedence"`, `"id":"i1"`, `"id":"acme"`}},
		{"changes of one", "GET", "/api/customers/newco/changes", "", 200, []string{`"op":"remove"`, `"op":"set"`, `"op":"add"`}},
		{"changes limit", "GET", "/api/changes?limit=0", "", 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if strings.HasPrefix(tc.body, "customers:") {
				hdr = []string{"Content-Type", "application/yaml"}
			}
			code, m := e.send(t, tc.method, tc.path, tc.body, hdr...)
			b, _ := json.Marshal(m)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, b)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("answer lacks %s: %s", w, b)
				}
			}
		})
	}
	// The command marks its requests: the change log says cli.
	if code, m := e.send(t, "PATCH", "/api/customers/i1", `{"name": "Eye One"}`, "Aupguard-Via", "cli"); code != 200 || m["change"].(map[string]any)["via"] != "cli" {
		t.Fatalf("via cli: %d %v", code, m)
	}
	if !strings.Contains(e.log.String(), `"event":"directory_change"`) {
		t.Errorf("no directory_change log line:\n%s", e.log.String())
	}
}
