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

// TestDirectoryAPIRefusesWhatNoPostmasterMeans: through the admin API
// with a valid token, every entry the issue found accepted is refused
// with 400 naming the field (and the other customer or the bound), and
// nothing is written; ?force=1 or "force": true allows the forceable ones
// and the change (and the change log) lists the rules waived.
func TestDirectoryAPIRefusesWhatNoPostmasterMeans(t *testing.T) {
	e := start(t, adminConfig, "", func(o *Options) {
		h, err := store.Open(config.StoreConfig{Backend: "memory"}, clock.System{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		s, _ := customer.OpenStore(h)
		o.Directory = customer.NewManager(s, o.Config, config.Options{}, nil)
	})
	tests := []struct {
		name, body, field, want string
		forceable               bool
	}{
		{"0.0.0.0/0", `{"id":"x","networks":["0.0.0.0/0"],"domains":["x.example"]}`, "networks[0]", "broader than directory.max_network_prefix.ipv4 (/16)", true},
		{"::/0", `{"id":"x","networks":["::/0"],"domains":["x.example"]}`, "networks[0]", "broader than directory.max_network_prefix.ipv6 (/32)", true},
		{"login *", `{"id":"x","logins":["*"],"domains":["x.example"]}`, "logins[0]", "catch-all", true},
		{"a network inside another customer's", `{"id":"x","networks":["192.0.2.9"],"domains":["x.example"]}`, "networks[0]", `inside customer \"acme\"'s network 192.0.2.0/24`, true},
		{"another customer's domain", `{"id":"x","logins":["x"],"domains":["acme.example"]}`, "domains[0]", `domain \"acme.example\" is customer \"acme\"'s`, true},
		{"*.net", `{"id":"x","logins":["x"],"domains":["*.net"]}`, "domains[0]", "covers a public suffix", true},
		{"a 10,000-character id", `{"id":"` + strings.Repeat("x", 10000) + `","logins":["x"],"domains":["x.example"]}`, "id", "at most 64", false},
		{"a login with NUL", `{"id":"x","logins":["x\u0000y"],"domains":["x.example"]}`, "logins[0]", "control character U+0000", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, m := e.send(t, "POST", "/api/customers", tc.body)
			b, _ := json.Marshal(m)
			if code != 400 || !strings.Contains(string(b), `"field":"`+tc.field+`"`) || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s; want 400 at %s with %q", code, b, tc.field, tc.want)
			}
			if code, _ := e.send(t, "GET", "/api/customers/x/definition", ""); code != 404 {
				t.Fatalf("the refused definition was written (%d)", code)
			}
			code, m = e.send(t, "POST", "/api/customers?force=1", tc.body)
			b, _ = json.Marshal(m)
			if !tc.forceable {
				if code != 400 {
					t.Fatalf("forced: %d %s; force must not allow it", code, b)
				}
				return
			}
			if code != 201 || !strings.Contains(string(b), `"forced":["`+tc.field+`: forced: `) {
				t.Fatalf("forced: %d %s; want 201 with the waived rule", code, b)
			}
			code, m = e.send(t, "GET", "/api/customers/x/changes", "")
			b, _ = json.Marshal(m)
			if code != 200 || !strings.Contains(string(b), `"forced":["`+tc.field) || !strings.Contains(string(b), `"force":true`) {
				t.Fatalf("change log: %d %s", code, b)
			}
			if code, _ := e.send(t, "DELETE", "/api/customers/x", ""); code != 200 {
				t.Fatalf("remove: %d", code)
			}
		})
	}
	t.Run(`"force": true in the body, and by patch`, func(t *testing.T) {
		if code, m := e.send(t, "POST", "/api/customers", `{"id":"y","force":true,"networks":["10.0.0.0/8"],"domains":["y.example"]}`); code != 201 {
			t.Fatalf("%d %v", code, m)
		}
		if code, m := e.send(t, "POST", "/api/customers", `{"id":"z","logins":["z"],"domains":["z.example"]}`); code != 201 {
			t.Fatalf("%d %v", code, m)
		}
		if code, _ := e.send(t, "PATCH", "/api/customers/z", `{"logins":["*@*"]}`); code != 400 {
			t.Fatalf("patch to a catch-all: %d, want 400", code)
		}
		if code, m := e.send(t, "PATCH", "/api/customers/z?force=true", `{"logins":["*@*"]}`); code != 200 {
			t.Fatalf("forced patch: %d %v", code, m)
		}
		if code, _ := e.send(t, "POST", "/api/customers?force=maybe", `{"id":"w","logins":["w"],"domains":["w.example"]}`); code != 400 {
			t.Fatalf("force=maybe: %d, want 400", code)
		}
	})
	t.Run("import, forced per request", func(t *testing.T) {
		body := `{"customers":[{"id":"i1","networks":["172.16.0.0/12"],"domains":["i1.example"]}]}`
		if code, _ := e.send(t, "POST", "/api/customers/import", body); code != 400 {
			t.Fatalf("import: %d, want 400", code)
		}
		code, m := e.send(t, "POST", "/api/customers/import?force=1", body)
		b, _ := json.Marshal(m)
		if code != 200 || !strings.Contains(string(b), `"customer":"i1"`) || !strings.Contains(string(b), "172.16.0.0/12 is broader") {
			t.Fatalf("forced import: %d %s", code, b)
		}
	})
}

// TestDirectoryAPIReseller: a customer's reseller is a field of its
// definition through the API (added, shown, listed) and must name a
// reseller of the config's resellers: directory.
func TestDirectoryAPIReseller(t *testing.T) {
	e := start(t, adminConfig+"  - {id: filed, reseller: hostco, networks: [192.0.3.0/24], domains: [filed.example]}\nresellers:\n  - {id: hostco, abuse_contacts: [abuse@hostco.example]}\n", "", func(o *Options) {
		h, err := store.Open(config.StoreConfig{Backend: "memory"}, clock.System{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		s, _ := customer.OpenStore(h)
		o.Directory = customer.NewManager(s, o.Config, config.Options{}, nil)
	})
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"add with a reseller", "POST", "/api/customers", `{"id": "sold", "reseller": "hostco", "networks": ["203.0.113.0/24"], "domains": ["sold.example"]}`, 201, `"op":"add"`},
		{"unknown reseller", "POST", "/api/customers", `{"id": "lost", "reseller": "nosuch", "networks": ["203.0.114.0/24"], "domains": ["lost.example"]}`, 400, `"field":"reseller"`},
		{"definition", "GET", "/api/customers/sold/definition", "", 200, `"reseller":"hostco"`},
		{"listed", "GET", "/api/directory", "", 200, `"reseller":"hostco"`},
		{"config customer", "GET", "/api/customers/filed", "", 200, `"reseller":"hostco"`},
		{"patch to unknown", "PATCH", "/api/customers/sold", `{"reseller": "other"}`, 400, `unknown reseller`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := e.send(t, tc.method, tc.path, tc.body)
			b, _ := json.Marshal(m)
			if code != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("status %d (want %d): %s, want %s", code, tc.code, b, tc.want)
			}
		})
	}
}
