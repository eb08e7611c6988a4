package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/observability/access"
	"github.com/aupguard/aupguard/internal/observability/audit"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// tenancyEnv starts an admin server (adminConfig: acme and beta, events
// of both) with tokens and the audit trail on a memory store, a mounted
// opt-out stand-in scoped like the real one, and returns a token scoped
// to acme.
func tenancyEnv(t *testing.T, mod func(*Options)) (*env, *access.Tokens, *audit.Log, string) {
	t.Helper()
	h, err := store.Open(config.StoreConfig{Backend: store.Memory}, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s, err := access.OpenTokens(h)
	if err != nil {
		t.Fatal(err)
	}
	ts := access.NewTokens(s, nil)
	trail, err := audit.Open(h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, adminConfig, "", func(o *Options) {
		o.Tokens, o.Audit = ts, trail
		delete(o.Mounts, "/api/optouts")
		o.Routes = []Route{{Pattern: "/api/optouts", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			audit.Describe(r.Context(), "optout.add", "acme", "", string(b))
			writeJSON(w, http.StatusCreated, map[string]any{"added": true})
		}), Scope: access.Methods(map[string]access.Scope{http.MethodPost: access.JSONField("list")})}}
		if mod != nil {
			mod(o)
		}
	})
	tok, _, err := ts.Create(context.Background(), "acme-portal", access.KindCustomer, "acme", 0, "admin")
	if err != nil {
		t.Fatal(err)
	}
	return e, ts, trail, tok
}

// TestScopedTokenAdversaries: what a hostile holder of a scoped token, a
// guesser, or another site can try.
func TestScopedTokenAdversaries(t *testing.T) {
	e, ts, trail, tok := tenancyEnv(t, nil)
	bearer := "Bearer " + tok
	send := func(method, path string, hdr map[string]string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e.url+path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	jsonHdr := func(auth string) map[string]string {
		return map[string]string{"Authorization": auth, "Content-Type": "application/json"}
	}
	t.Run("tenant write of its own list is recorded as the tenant, whatever it claims", func(t *testing.T) {
		h := jsonHdr(bearer)
		h["Aupguard-Actor"] = "cli:root"
		if code, body := send("POST", "/api/optouts", h, []byte(`{"list":"acme","address":"x@y.example"}`)); code != 201 {
			t.Fatalf("%d %s", code, body)
		}
		es, _ := trail.Entries(context.Background(), audit.Query{Who: "acme-portal"})
		if len(es) != 1 || es[0].Action != "optout.add" || !strings.HasPrefix(es[0].From, "127.0.0.1:") {
			t.Fatalf("trail: %+v", es)
		}
		if es, _ := trail.Entries(context.Background(), audit.Query{Who: "cli:root"}); len(es) != 0 {
			t.Fatalf("a scoped token acted as cli:root: %+v", es)
		}
	})
	t.Run("another tenant's list", func(t *testing.T) {
		if code, body := send("POST", "/api/optouts", jsonHdr(bearer), []byte(`{"list":"beta","address":"x@y.example"}`)); code != 404 || !strings.Contains(body, `"not found"`) {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("oversized bodies", func(t *testing.T) {
		big := []byte(`{"list":"acme","note":"` + strings.Repeat("x", 80<<10) + `"}`)
		if code, _ := send("POST", "/api/optouts", jsonHdr(bearer), big); code != 404 {
			t.Errorf("tenant's oversized body: %d, want the uniform 404 (not read past 64 KiB)", code)
		}
		huge := []byte(`{"name":"` + strings.Repeat("n", 8<<10) + `","customer":"acme"}`)
		if code, _ := send("POST", "/api/tokens", jsonHdr("Bearer "+testToken), huge); code != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized token creation: %d, want 413", code)
		}
		if code, _ := send("POST", "/api/audit", jsonHdr("Bearer "+testToken), huge); code != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized audit entry: %d, want 413", code)
		}
	})
	t.Run("cross-site with the tenant's Basic credentials", func(t *testing.T) {
		basic := func() string {
			r, _ := http.NewRequest("GET", "/", nil)
			r.SetBasicAuth("portal", tok)
			return r.Header.Get("Authorization")
		}()
		for _, ct := range []string{"application/json", "text/plain"} {
			h := map[string]string{"Authorization": basic, "Content-Type": ct, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
			if code, _ := send("POST", "/api/optouts", h, []byte(`{"list":"acme","address":"x@y.example"}`)); code != 403 && code != 415 {
				t.Errorf("cross-site %s: %d, want 403", ct, code)
			}
		}
	})
	t.Run("a tenant creates no token and reads no trail", func(t *testing.T) {
		for _, rq := range []struct{ method, path, body string }{
			{"POST", "/api/tokens", `{"name":"mine","customer":"beta"}`}, {"GET", "/api/tokens", ""},
			{"DELETE", "/api/tokens/acme-portal", ""}, {"GET", "/api/audit", ""}, {"POST", "/api/audit", `{"action":"x"}`}, {"GET", "/audit", ""},
		} {
			if code, body := send(rq.method, rq.path, jsonHdr(bearer), []byte(rq.body)); code != 404 || !strings.Contains(body, `"not found"`) {
				t.Errorf("%s %s: %d %s", rq.method, rq.path, code, body)
			}
		}
	})
	t.Run("token API as the admin", func(t *testing.T) {
		code, body := send("POST", "/api/tokens", jsonHdr("Bearer "+testToken), []byte(`{"name":"beta-short","customer":"beta","expires":"1s"}`))
		if code != 201 {
			t.Fatalf("%d %s", code, body)
		}
		var out struct {
			Token  string       `json:"token"`
			Record access.Token `json:"record"`
		}
		json.Unmarshal([]byte(body), &out)
		if out.Record.Hash != "" || out.Record.Expires.IsZero() {
			t.Errorf("record: %+v", out.Record)
		}
		if code, body := send("GET", "/api/whoami", jsonHdr("Bearer "+out.Token), nil); code != 200 || !strings.Contains(body, `"beta-short"`) {
			t.Errorf("whoami: %d %s", code, body)
		}
		if code, body := send("GET", "/api/tokens", jsonHdr("Bearer "+testToken), nil); code != 200 || strings.Contains(body, out.Token[5:]) || strings.Contains(body, access.Hash(out.Token)) {
			t.Errorf("list shows the token or its digest: %d %s", code, body)
		}
		for _, bad := range []string{`{"name":"x","customer":"nosuch"}`, `{"name":"x","reseller":"nosuch"}`, `{"name":"x","customer":"acme","reseller":"r"}`,
			`{"name":"x","customer":"acme","expires":"-1h"}`, `{"name":"bad name","customer":"acme"}`, `{"name":"x","customer":"acme","extra":1}`} {
			if code, _ := send("POST", "/api/tokens", jsonHdr("Bearer "+testToken), []byte(bad)); code != 400 {
				t.Errorf("%s: %d, want 400", bad, code)
			}
		}
		time.Sleep(1100 * time.Millisecond)
		if code, _ := send("GET", "/api/whoami", jsonHdr("Bearer "+out.Token), nil); code != 401 {
			t.Errorf("expired: %d, want 401", code)
		}
		if code, _ := send("DELETE", "/api/tokens/beta-short", jsonHdr("Bearer "+testToken), nil); code != 200 {
			t.Errorf("revoke: %d", code)
		}
		es, _ := trail.Entries(context.Background(), audit.Query{Who: "admin"})
		var actions []string
		for _, e := range es {
			actions = append(actions, e.Action+" "+e.Target)
		}
		if got := strings.Join(actions, ","); got != "token.revoke beta-short,token.create beta-short" {
			t.Errorf("the admin's trail: %s", got)
		}
	})
	t.Run("revoked at once", func(t *testing.T) {
		if _, err := ts.Store.Revoke(context.Background(), "acme-portal"); err != nil {
			t.Fatal(err)
		}
		if code, _ := send("GET", "/api/whoami", jsonHdr(bearer), nil); code != 401 {
			t.Errorf("revoked: %d, want 401", code)
		}
	})
	// Last: it blocks this client.
	t.Run("guessing is throttled per client", func(t *testing.T) {
		var codes []int
		for i := 0; i < authFailBurst+5; i++ {
			code, _ := send("GET", "/api/whoami", jsonHdr("Bearer aupt_"+strings.Repeat("0", 63)+string(rune('a'+i%6))), nil)
			codes = append(codes, code)
		}
		if codes[0] != 401 || codes[len(codes)-1] != 429 {
			t.Fatalf("codes: %v", codes)
		}
		// Blocked, even with the right token, until the bucket refills.
		if code, _ := send("GET", "/api/whoami", jsonHdr("Bearer "+testToken), nil); code != 429 {
			t.Errorf("the right token from a blocked client: %d, want 429", code)
		}
		if code, _ := send("GET", "/healthz", nil, nil); code != 200 {
			t.Errorf("healthz without credentials from a blocked client: %d", code)
		}
		if !strings.Contains(e.log.String(), `"event":"admin_auth_throttled"`) {
			t.Error("no throttled log line")
		}
	})
}

// TestScopedConsoleInBrowser logs in to the console in headless Chromium
// with a customer's token (Basic, the token as password): it sees its own
// customer's pages, nothing of the other customer, and no admin action.
func TestScopedConsoleInBrowser(t *testing.T) {
	testenv.Need(t, "chromium")
	e, _, _, tok := tenancyEnv(t, nil)
	base := "http://portal:" + tok + "@" + e.srv.Addr().String()
	shots := t.ArtifactDir()
	for _, p := range []struct {
		name, path string
		want       []string
	}{
		{"customers", "/customers", []string{`<tr data-customer="acme">`, `id="scope">signed in as acme-portal \(customer acme\)`}},
		{"customer", "/customers/acme", []string{`<h1>acme`, `id="flag"><span class="ok">not flagged`, `This customer.s decisions`}},
		{"decisions", "/decisions?since=24h", []string{`<tr data-ref="DEFERRED01">`, `<tr data-ref="ACCEPTED01">`}},
		{"decision", "/decision?ref=deferred01", []string{`data-ref="DEFERRED01"`}},
		{"dashboard", "/", []string{`acme`}},
		{"other customer", "/customers/beta", []string{`"error": "not found"`}},
		{"other decision", "/decision?ref=MONITOR001", []string{`"error": "not found"`}},
		{"audit page", "/audit", []string{`"error": "not found"`}},
	} {
		t.Run(p.name, func(t *testing.T) {
			dom := string(chromium(t, "--dump-dom", base+p.path))
			for _, re := range p.want {
				if !regexp.MustCompile("(?s)" + re).MatchString(dom) {
					t.Errorf("DOM does not match %s", re)
				}
			}
			for _, other := range []string{"beta", "MONITOR001", "198.51.100", "clear-flag", `href="/audit"`} {
				if strings.Contains(dom, other) {
					t.Errorf("the tenant's page shows %q", other)
				}
			}
			if t.Failed() {
				t.Logf("DOM:\n%s", dom)
			}
			shot := filepath.Join(shots, "scoped-"+strings.ReplaceAll(p.name, " ", "-")+".png")
			chromium(t, "--screenshot="+shot, base+p.path)
			if fi, err := os.Stat(shot); err != nil || fi.Size() < 2_000 {
				t.Fatalf("screenshot %s: %v", shot, err)
			}
		})
	}
	// The admin sees the audit link and both customers.
	dom := string(chromium(t, "--dump-dom", "http://postmaster:"+testToken+"@"+e.srv.Addr().String()+"/customers"))
	if !strings.Contains(dom, `href="/audit"`) || !strings.Contains(dom, `data-customer="beta"`) {
		t.Errorf("admin's console: %s", dom)
	}
}
