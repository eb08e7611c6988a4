package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// matrixTenant is a customer of the access matrix and what identifies its
// data in an answer.
type matrixTenant struct {
	id, ref, domain string
}

var (
	tenantOne   = matrixTenant{"tenant-one", "REFONE0001", "one.example"}
	tenantTwo   = matrixTenant{"tenant-two", "REFTWO0002", "two.example"}
	tenantThree = matrixTenant{"tenant-three", "REFTHREE03", "three.example"}
)

// routeAccess is what a scoped token may do on a route: "public" (anyone,
// even without a token), "any" (every token), "own" (its own tenants'
// data only), anything else the admin token's alone.
var routeAccess = map[string]string{
	"GET /healthz":                   "public",
	"GET /api/whoami":                "any",
	"GET /api/customers":             "own",
	"GET /api/customers/{id}":        "own",
	"GET /api/customers/{id}/quota":  "own",
	"GET /api/events":                "own",
	"GET /api/events/{ref}":          "own",
	"GET /api/report":                "own",
	"GET /{$}":                       "own",
	"GET /decision":                  "own",
	"GET /decisions":                 "own",
	"GET /customers":                 "own",
	"GET /customers/{id}":            "own",
	"GET /api/optouts":               "own",
	"POST /api/optouts":              "own",
	"GET /api/customers/{id}/flag":   "own",
	"GET /api/reputation/{customer}": "own",
	"GET /api/standing":              "own",
}

// TestAccessMatrix runs the real binary on a real Redis and tries every
// registered route (listed by the server itself, GET /api/routes) with
// every method it serves, on a resource of each of two customers, as the
// admin, a reseller R, R's customer C1, another customer C2 and no token;
// it asserts each cell's status, that whatever a scoped token may not see
// answers the same 404 as what does not exist, and that no answer to a
// scoped token names another tenant's customer, reference or domain.
func TestAccessMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	dir := t.TempDir()
	milterAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	storeYAML := fmt.Sprintf(`{backend: redis, path: %q, timeout: 5s, redis: {addrs: [%q]}}`, filepath.Join(dir, "state"), r.Addr())
	cfgText := fmt.Sprintf(`milter: {listen: "inet:%s"}
admin: {listen: %q, token_file: %q}
store: %s
optout: {unsubscribe: {listen: "off"}}
chain: [sender_identity, rate_limit]
resellers:
  - {id: resel-r}
  - {id: resel-s}
customers:
  - {id: tenant-one, reseller: resel-r, networks: [10.1.0.0/24], domains: [one.example]}
  - {id: tenant-two, reseller: resel-s, networks: [10.2.0.0/24], domains: [two.example]}
  - {id: tenant-three, reseller: resel-r, networks: [10.3.0.0/24], domains: [three.example]}
`, milterAddr, adminAddr, filepath.Join(dir, "state", "admin.token"), storeYAML)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	startServe(t, bin, cfgPath, milterAddr)
	tokFile := filepath.Join(dir, "state", "admin.token")
	waitFor(t, "the admin token", func() bool { _, err := os.Stat(tokFile); return err == nil })
	adminTok, _ := os.ReadFile(tokFile)
	base := "http://" + adminAddr

	// The decisions of the three customers, written to the shared record.
	cfg, err := config.Load(cfgPath, gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec, err := events.New(h, cfg.Events, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i, tn := range []matrixTenant{tenantOne, tenantTwo, tenantThree} {
		rec.Observe(&gateway.Decision{Time: now.Add(-time.Duration(i+1) * time.Minute), Stage: gateway.StageMail, Ref: tn.ref, Customer: tn.id,
			SenderDomain: tn.domain, Action: policy.Defer, Effective: policy.Defer, Check: "rate_limit", Finding: "volume_spike", Code: 451, Enhanced: "4.7.1", Mode: "enforce"})
	}
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.Close()

	// Tokens, made with the command (on the store itself).
	mkToken := func(name string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runMain(append([]string{"token", "create", "-config", cfgPath, "-name", name}, args...), &out, &errb); code != 0 {
			t.Fatalf("token create %s: exit %d: %s", name, code, errb.String())
		}
		tok := strings.TrimSpace(out.String())
		if !regexp.MustCompile(`^aupt_[0-9a-f]{64}$`).MatchString(tok) {
			t.Fatalf("token create printed %q", tok)
		}
		return tok
	}
	principals := []struct {
		name, token string
		sees        map[string]bool // tenant ids
	}{
		{"admin", strings.TrimSpace(string(adminTok)), nil},
		{"reseller R", mkToken("tok-r", "-reseller", "resel-r"), map[string]bool{tenantOne.id: true, tenantThree.id: true}},
		{"customer C1", mkToken("tok-one", "-customer", tenantOne.id), map[string]bool{tenantOne.id: true}},
		{"customer C2", mkToken("tok-two", "-customer", tenantTwo.id), map[string]bool{tenantTwo.id: true}},
		{"no token", "", nil},
	}
	// The store keeps digests, never a token.
	keys, err := h.Client.Keys(context.Background(), "*tokens*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("token keys: %v %v", keys, err)
	}
	for _, k := range keys {
		dump, _ := h.Client.HGetAll(context.Background(), k).Result()
		for _, p := range principals[1:4] {
			for f, v := range dump {
				if strings.Contains(f+v, p.token) || strings.Contains(f+v, p.token[5:]) {
					t.Fatalf("Redis key %s holds the plain token of %s", k, p.name)
				}
			}
		}
	}

	// A suspension of C2 (through the command and the admin API): a
	// standing only C2 and the admin may see.
	{
		var out, errb bytes.Buffer
		if code := runMain([]string{"suspend", "customer", tenantTwo.id, "-action", "defer", "-reason", "matrix test", "-config", cfgPath}, &out, &errb); code != 0 {
			t.Fatalf("suspend: %d %s", code, errb.String())
		}
	}
	call := func(method, path, token string, body []byte) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if method != "GET" && method != "HEAD" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// The route list, from the server's own registration.
	code, body := call("GET", "/api/routes", principals[0].token, nil)
	if code != 200 {
		t.Fatalf("GET /api/routes: %d %s", code, body)
	}
	var rl struct {
		Routes []struct {
			Pattern string `json:"pattern"`
			Tenant  bool   `json:"tenant"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(body), &rl); err != nil || len(rl.Routes) < 30 {
		t.Fatalf("routes: %v %s", err, body)
	}
	type cell struct{ method, pattern, path string }
	var routes []cell
	for _, rt := range rl.Routes {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		methods := []string{method}
		if !ok {
			path, methods = rt.Pattern, []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
		}
		for _, m := range methods {
			key := m + " " + path
			if rt.Tenant != (routeAccess[key] != "") && !ok {
				// A mounted pattern open to tenants for some methods only.
			} else if rt.Tenant != (routeAccess[key] != "") {
				t.Errorf("route %s: the server says tenant=%v, the matrix expects %q", key, rt.Tenant, routeAccess[key])
			}
			routes = append(routes, cell{m, rt.Pattern, path})
		}
	}
	// isUniform tells the one 404 a scoped token gets for what it may
	// not see (and for what does not exist).
	isUniform := func(code int, body string) bool {
		var m map[string]any
		return code == 404 && json.Unmarshal([]byte(body), &m) == nil && len(m) == 1 && m["error"] == "not found"
	}
	wildcard := regexp.MustCompile(`\{[^}]*\}`)
	concrete := func(path string, owner matrixTenant) string {
		p := wildcard.ReplaceAllStringFunc(path, func(w string) string {
			switch w {
			case "{id}", "{customer}":
				return owner.id
			case "{ref}":
				return owner.ref
			case "{name}":
				return "tok-unknown"
			case "{$}":
				return ""
			}
			return "x"
		})
		return p + "?customer=" + owner.id + "&list=" + owner.id + "&ref=" + owner.ref
	}
	leaks := 0
	cells := 0
	all := []matrixTenant{tenantOne, tenantTwo, tenantThree}
	// Scoped tokens and no token first; the admin last (its writes may
	// change what the others would see).
	order := []int{1, 2, 3, 4, 0}
	for _, pi := range order {
		p := principals[pi]
		for _, rt := range routes {
			key := rt.method + " " + rt.path
			kind := routeAccess[key]
			for _, owner := range []matrixTenant{tenantOne, tenantTwo} {
				path := concrete(rt.path, owner)
				var reqBody []byte
				if rt.method == "POST" || rt.method == "PUT" || rt.method == "PATCH" {
					reqBody = []byte(`{"list":"` + owner.id + `","address":"someone@` + owner.domain + `"}`)
				}
				name := fmt.Sprintf("%s/%s %s/%s", p.name, rt.method, rt.pattern, owner.id)
				cells++
				code, body := call(rt.method, path, p.token, reqBody)
				switch {
				case p.name == "no token":
					want := 401
					if kind == "public" {
						want = 200
					}
					if code != want {
						t.Errorf("%s: %d, want %d: %.200s", name, code, want, body)
					}
				case p.name == "admin":
					// A console form without the console's origin and form
					// token is the guard's 403, whoever sends it.
					consoleForm := rt.method != "GET" && !strings.HasPrefix(rt.path, "/api/")
					if code == 401 || (code == 403 && !consoleForm) || code == 429 || isUniform(code, body) {
						t.Errorf("%s: the admin token refused: %d %.200s", name, code, body)
					}
				default:
					visible := kind == "public" || kind == "any" || (kind == "own" && p.sees[owner.id])
					if visible && (code < 200 || code >= 400) {
						t.Errorf("%s: %d, want success: %.200s", name, code, body)
					}
					if !visible && !isUniform(code, body) {
						t.Errorf("%s: %d %.200s, want the uniform 404", name, code, body)
					}
					for _, other := range all {
						if p.sees[other.id] {
							continue
						}
						for _, s := range []string{other.id, other.ref, other.domain} {
							if strings.Contains(body, s) {
								leaks++
								t.Errorf("LEAK %s: the answer names %q of %s: %.300s", name, s, other.id, body)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("access matrix: %d routes×methods, %d cells (5 principals × 2 owners), %d leaks", len(routes), cells, leaks)

	// Lists without a filter show a scoped token its own only.
	for _, p := range principals[1:4] {
		for _, path := range []string{"/api/customers", "/api/events", "/decisions", "/customers"} {
			code, body := call("GET", path, p.token, nil)
			if code != 200 {
				t.Errorf("%s GET %s: %d", p.name, path, code)
			}
			for _, tn := range all {
				if has := strings.Contains(body, tn.id); has != p.sees[tn.id] {
					t.Errorf("%s GET %s: names %s: %v, want %v", p.name, path, tn.id, has, p.sees[tn.id])
				}
			}
		}
	}

	// Its suspension: C2 sees it, C1 and R do not.
	for i, want := range map[int]bool{1: false, 2: false, 3: true} {
		code, body := call("GET", "/api/standing", principals[i].token, nil)
		if shown := strings.Contains(body, `"matrix test"`); code != 200 || shown != want {
			t.Errorf("%s GET /api/standing: %d, shows C2's suspension: %v, want %v: %s", principals[i].name, code, shown, want, body)
		}
	}

	// Reference guessing: C1 asking C2's reference gets exactly what a
	// reference that does not exist gets.
	c1 := principals[2].token
	for _, tc := range []struct{ other, none string }{
		{"/api/events/" + tenantTwo.ref, "/api/events/NOSUCHREF9"},
		{"/decision?ref=" + tenantTwo.ref, "/decision?ref=NOSUCHREF9"},
		{"/api/customers/" + tenantTwo.id, "/api/customers/no-such-customer"},
		{"/customers/" + tenantTwo.id, "/customers/no-such-customer"},
		{"/api/customers/" + tenantTwo.id + "/flag", "/api/customers/no-such-customer/flag"},
		{"/api/optouts?list=" + tenantTwo.id, "/api/optouts?list=no-such-customer"},
	} {
		c2, b2 := call("GET", tc.other, c1, nil)
		cn, bn := call("GET", tc.none, c1, nil)
		if c2 != 404 || cn != 404 || b2 != bn {
			t.Errorf("guessing %s: %d %q; nonexistent %s: %d %q (want the same 404)", tc.other, c2, b2, tc.none, cn, bn)
		}
	}
	if code, body := call("GET", "/api/events?ref="+tenantTwo.ref, c1, nil); code != 200 || strings.Contains(body, tenantTwo.ref) {
		t.Errorf("C1 filtering events by C2's ref: %d %s", code, body)
	}
	// Never remove a recipient's opt-out, even from its own list.
	if code, _ := call("DELETE", "/api/optouts?list="+tenantOne.id+"&address=someone@one.example", c1, nil); code != 404 {
		t.Errorf("C1 removing its own opt-out: %d, want 404", code)
	}

	// The audit trail has the tokens created by the command and the
	// tenant's opt-out additions, with who and from where.
	code, body = call("GET", "/api/audit?since=1h&limit=1000", principals[0].token, nil)
	if code != 200 {
		t.Fatalf("audit: %d %s", code, body)
	}
	var trail struct {
		Entries []struct{ Who, From, Action, Target, After string } `json:"entries"`
	}
	json.Unmarshal([]byte(body), &trail)
	found := map[string]bool{}
	for _, e := range trail.Entries {
		if e.Action == "token.create" && strings.HasPrefix(e.Who, "cli:") && e.From == "cli" {
			found["token.create "+e.Target] = true
		}
		if e.Action == "POST /api/optouts" && e.Who == "tok-one" && strings.HasPrefix(e.From, "127.0.0.1:") {
			found["tenant add"] = true
		}
		if e.Action == "standing.suspend" && e.Target == "customer:"+tenantTwo.id && strings.HasPrefix(e.Who, "cli:") && e.From == "cli" {
			found["suspend"] = true
		}
	}
	for _, k := range []string{"token.create tok-r", "token.create tok-one", "token.create tok-two", "tenant add", "suspend"} {
		if !found[k] {
			t.Errorf("audit trail lacks %s: %s", k, body)
		}
	}
	var out, errb bytes.Buffer
	if code := runMain([]string{"audit", "-config", cfgPath, "-since", "1h", "-who", "tok-one", "-json"}, &out, &errb); code != 0 {
		t.Fatalf("audit command: %d %s", code, errb.String())
	}
	var cliTrail struct {
		Entries []struct{ Who string } `json:"entries"`
	}
	json.Unmarshal(out.Bytes(), &cliTrail)
	if len(cliTrail.Entries) == 0 {
		t.Errorf("aupguard audit -who tok-one: nothing: %s", out.String())
	}
	for _, e := range cliTrail.Entries {
		if e.Who != "tok-one" {
			t.Errorf("aupguard audit -who tok-one shows %s", e.Who)
		}
	}

	// Revoked and expired tokens stop at once on the shared store.
	short := mkToken("tok-short", "-customer", tenantOne.id, "-expires", "2s")
	if code, _ := call("GET", "/api/whoami", short, nil); code != 200 {
		t.Fatalf("fresh short token: %d", code)
	}
	out.Reset()
	if code := runMain([]string{"token", "revoke", "-config", cfgPath, "tok-two"}, &out, &errb); code != 0 {
		t.Fatalf("revoke: %s", errb.String())
	}
	if code, _ := call("GET", "/api/whoami", principals[3].token, nil); code != 401 {
		t.Errorf("revoked token: %d, want 401", code)
	}
	time.Sleep(2100 * time.Millisecond)
	if code, _ := call("GET", "/api/whoami", short, nil); code != 401 {
		t.Errorf("expired token: %d, want 401", code)
	}
	out.Reset()
	if code := runMain([]string{"token", "list", "-config", cfgPath, "-json"}, &out, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	var tl struct {
		Tokens []struct {
			Name     string    `json:"name"`
			Hash     string    `json:"hash"`
			LastUsed time.Time `json:"last_used"`
		} `json:"tokens"`
	}
	json.Unmarshal(out.Bytes(), &tl)
	var names []string
	for _, tk := range tl.Tokens {
		names = append(names, tk.Name)
		if tk.Hash != "" {
			t.Errorf("token list shows a digest")
		}
		if tk.Name == "tok-one" && tk.LastUsed.IsZero() {
			t.Errorf("tok-one: no last use recorded")
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "tok-one,tok-r,tok-short" {
		t.Errorf("tokens after revoking tok-two: %v", names)
	}
}
