package optout

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
)

func do(t *testing.T, h http.Handler, method, url, ctype, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestUnsubscribeHandler(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			h, err := NewUnsubscribeHandler(APIDeps{Store: svc.h, Config: cfg, Secret: testKey, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			tok := NewToken(testKey, "acme", "jane@example.com", t0)
			other := NewToken(testKey, "acme", "john@example.com", t0)
			tampered := []byte(other)
			tampered[10] ^= 1
			if tampered[10] == '+' || tampered[10] == '/' {
				tampered[10] = 'A'
			}
			steps := []struct {
				name, method, token, body string
				wantCode                  int
				wantBody                  string
				suppressed                map[string]bool
			}{
				{"GET shows a form and records nothing", "GET", tok, "", 200, `<form method="post">`, map[string]bool{"jane@example.com": false}},
				{"HEAD records nothing", "HEAD", tok, "", 200, "", map[string]bool{"jane@example.com": false}},
				{"tampered POST is refused", "POST", string(tampered), "List-Unsubscribe=One-Click", 400, "not valid", map[string]bool{"john@example.com": false}},
				{"garbage POST is refused", "POST", "x", "List-Unsubscribe=One-Click", 400, "not valid", nil},
				{"one-click POST records", "POST", tok, "List-Unsubscribe=One-Click", 200, "Unsubscribed", map[string]bool{"jane@example.com": true, "john@example.com": false}},
				{"repeated POST is fine", "POST", tok, "List-Unsubscribe=One-Click", 200, "Unsubscribed", map[string]bool{"jane@example.com": true}},
			}
			for _, s := range steps {
				t.Run(s.name, func(t *testing.T) {
					code, body := do(t, h, s.method, "/u/"+s.token, "application/x-www-form-urlencoded", s.body)
					if code != s.wantCode || !strings.Contains(body, s.wantBody) {
						t.Fatalf("%s /u/%s = %d %q; want %d containing %q", s.method, s.token, code, body, s.wantCode, s.wantBody)
					}
					for addr, want := range s.suppressed {
						e, ok, err := svc.Check(bg, "acme", addr)
						if err != nil || ok != want || (ok && e.Source != SourceUnsubscribe) {
							t.Fatalf("%s suppressed = %v (%+v, %v), want %v", addr, ok, e, err, want)
						}
					}
				})
			}
			if n, _ := svc.Backend.Len(bg, "acme"); n != 1 {
				t.Fatalf("list has %d entries, want 1", n)
			}
		})
	}
}

func TestAdminAPI(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			h, err := NewAPI(APIDeps{Store: svc.h, Config: cfg, Secret: testKey, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name, method, url, ctype, body string
				wantCode                       int
				wantBody                       string
			}{
				{"add", "POST", "/api/optouts", "application/json", `{"list":"acme","address":"Jane@EXAMPLE.com","note":"phone call"}`, 201, `"added": true`},
				{"add again", "POST", "/api/optouts", "application/json", `{"list":"acme","address":"jane@example.com"}`, 200, `"note": "phone call"`},
				{"add global", "POST", "/api/optouts", "application/json", `{"list":"*","address":"trap@spamtrap.example"}`, 201, `"source": "api"`},
				{"bad address", "POST", "/api/optouts", "application/json", `{"list":"acme","address":"not-an-address"}`, 400, "bad address"},
				{"address with NUL", "POST", "/api/optouts", "application/json", `{"list":"acme","address":"ja\u0000ne@example.com"}`, 400, "control character U+0000"},
				{"no list", "POST", "/api/optouts", "application/json", `{"address":"a@b.example"}`, 400, "no list"},
				{"unknown field", "POST", "/api/optouts", "application/json", `{"list":"acme","addr":"a@b.example"}`, 400, "unknown field"},
				{"check own", "GET", "/api/optouts?list=acme&address=jane@example.com", "", "", 200, `"suppressed": true`},
				{"check global via customer", "GET", "/api/optouts?list=beta&address=trap@spamtrap.example", "", "", 200, `"list": "*"`},
				{"check absent", "GET", "/api/optouts?list=beta&address=jane@example.com", "", "", 200, `"suppressed": false`},
				{"list", "GET", "/api/optouts?list=acme", "", "", 200, `"total": 1`},
				{"import", "POST", "/api/optouts/import?list=beta", "text/csv", "address,note\na@x.example,one\nbroken\nb@x.example,two\n", 200, `"line": 3`},
				{"export csv", "GET", "/api/optouts?list=beta&format=csv", "", "", 200, "list,address,hash,source,time,note"},
				{"remove", "DELETE", "/api/optouts?list=acme&address=JANE@example.com", "", "", 200, `"removed": true`},
				{"remove absent", "DELETE", "/api/optouts?list=acme&address=jane@example.com", "", "", 404, "not on the list"},
				{"complaint", "POST", "/api/complaints", "message/rfc822", string(fixture(t, "arf/yahoo_full.eml")), 200, `"customer": "acme"`},
				{"malformed complaint", "POST", "/api/complaints", "message/rfc822", string(fixture(t, "arf/bad_not_report.eml")), 422, "malformed feedback report"},
				{"status", "GET", "/api/customers/acme/flag", "", "", 200, `"complaints": 1`},
				{"clear unflagged", "DELETE", "/api/customers/acme/flag", "", "", 200, `"cleared": false`},
				{"bad customer", "GET", "/api/customers/a*b/flag", "", "", 400, "bad customer id"},
			}
			for _, s := range steps {
				t.Run(s.name, func(t *testing.T) {
					code, body := do(t, h, s.method, s.url, s.ctype, s.body)
					if code != s.wantCode || !strings.Contains(body, s.wantBody) {
						t.Fatalf("%s %s = %d %s; want %d containing %q", s.method, s.url, code, body, s.wantCode, s.wantBody)
					}
					if strings.HasPrefix(body, "{") && !json.Valid([]byte(body)) {
						t.Fatalf("invalid JSON: %s", body)
					}
				})
			}
			if _, ok, _ := svc.Check(bg, "beta", "b@x.example"); !ok {
				t.Fatal("good line after a bad one was not imported")
			}
			if err := svc.Backend.SetFlag(bg, "acme", Flag{Reason: "opted_out_sends", Since: t0, Hits: 3}); err != nil {
				t.Fatal(err)
			}
			if code, body := do(t, h, "GET", "/api/customers/acme/flag", "", ""); code != 200 || !strings.Contains(body, `"reason": "opted_out_sends"`) {
				t.Fatalf("flag status = %d %s", code, body)
			}
			if code, body := do(t, h, "DELETE", "/api/customers/acme/flag", "", ""); code != 200 || !strings.Contains(body, `"cleared": true`) {
				t.Fatalf("clear = %d %s", code, body)
			}
		})
	}
}

// doRaw serves one request without a testing.T (the helper process).
func doRaw(h http.Handler, method, url, body string) (int, string) {
	req := httptest.NewRequest(method, url, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}
