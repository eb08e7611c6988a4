package access

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestTokensOnBothStores creates, authenticates, expires, touches and
// revokes tokens on the memory store (persisted) and a real Redis; the
// store holds digests only.
func TestTokensOnBothStores(t *testing.T) {
	for _, backend := range []string{store.Memory, store.Redis} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			sc := config.StoreConfig{Backend: backend, Path: dir, Timeout: 5 * time.Second}
			if backend == store.Redis {
				sc.Redis.Addrs = []string{testenv.StartRedis(t, testenv.RedisOptions{}).Addr()}
			}
			clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			h, err := store.Open(sc, clk)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			s, err := OpenTokens(h)
			if err != nil {
				t.Fatal(err)
			}
			ts := NewTokens(s, clk)
			ctx := context.Background()
			plain, rec, err := ts.Create(ctx, "acme-portal", KindCustomer, "acme", 0, "admin")
			if err != nil {
				t.Fatal(err)
			}
			short, _, err := ts.Create(ctx, "r1-short", KindReseller, "r1", time.Hour, "cli:ops")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := ts.Create(ctx, "acme-portal", KindCustomer, "acme", 0, "admin"); !errors.Is(err, ErrTokenExists) {
				t.Errorf("duplicate name: %v", err)
			}
			for _, bad := range []struct{ name, kind, id string }{{"admin", KindCustomer, "acme"}, {"has space", KindCustomer, "acme"}, {"x", "provider", "acme"}, {"y", KindCustomer, ""}} {
				if _, _, err := ts.Create(ctx, bad.name, bad.kind, bad.id, 0, ""); err == nil {
					t.Errorf("created %+v", bad)
				}
			}
			if rec.Hash != Hash(plain) || strings.Contains(rec.Hash, plain[5:]) {
				t.Fatal("record's hash")
			}
			got, ok, err := ts.Authenticate(ctx, plain)
			if err != nil || !ok || got.Principal() != (Principal{Name: "acme-portal", Kind: KindCustomer, ID: "acme"}) {
				t.Fatalf("authenticate: %+v %v %v", got, ok, err)
			}
			for _, wrong := range []string{"", plain[:len(plain)-1], plain + "0", "aupt_" + strings.Repeat("0", 64), strings.ToUpper(plain)} {
				if _, ok, _ := ts.Authenticate(ctx, wrong); ok {
					t.Errorf("%q authenticated", wrong)
				}
			}
			list, err := s.List(ctx)
			if err != nil || len(list) != 2 || list[0].Name != "acme-portal" || list[0].LastUsed.IsZero() {
				t.Fatalf("list: %+v %v", list, err)
			}
			// Expiry.
			clk.Advance(59 * time.Minute)
			if _, ok, _ := ts.Authenticate(ctx, short); !ok {
				t.Error("the short token before its expiry")
			}
			clk.Advance(time.Minute)
			if _, ok, _ := ts.Authenticate(ctx, short); ok {
				t.Error("the short token at its expiry")
			}
			// Revocation: at once, and a touch after it resurrects nothing.
			if _, err := s.Revoke(ctx, "acme-portal"); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := ts.Authenticate(ctx, plain); ok {
				t.Error("revoked token authenticated")
			}
			if err := s.Touch(ctx, Hash(plain), clk.Now()); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.Lookup(ctx, Hash(plain)); ok {
				t.Error("touch resurrected a revoked token")
			}
			if _, err := s.Revoke(ctx, "acme-portal"); !errors.Is(err, ErrNoToken) {
				t.Errorf("second revoke: %v", err)
			}
			// Nothing in the store is a token.
			var dump string
			if backend == store.Redis {
				keys, _ := h.Client.Keys(ctx, "*").Result()
				for _, k := range keys {
					if m, err := h.Client.HGetAll(ctx, k).Result(); err == nil {
						for f, v := range m {
							dump += f + v
						}
					}
				}
			} else {
				b, err := os.ReadFile(filepath.Join(dir, "tokens.json"))
				if err != nil {
					t.Fatal(err)
				}
				dump = string(b)
			}
			if !strings.Contains(dump, Hash(short)) || strings.Contains(dump, short[5:]) {
				t.Errorf("the store should hold the digest, never the token: %s", dump)
			}
		})
	}
}

// TestScopes checks each scope constructor against a reseller and a
// customer tenant.
func TestScopes(t *testing.T) {
	dir := ownersMap{"c1": "r1", "c3": "r1", "c2": "r2", "own": ""}
	r1 := Tenant{Principal{Name: "r", Kind: KindReseller, ID: "r1"}, dir}
	c1 := Tenant{Principal{Name: "c", Kind: KindCustomer, ID: "c1"}, dir}
	req := func(method, target, body string) *http.Request {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.SetPathValue("id", strings.TrimPrefix(strings.SplitN(target, "?", 2)[0], "/x/"))
		return r
	}
	for _, tc := range []struct {
		name   string
		scope  Scope
		req    *http.Request
		t      Tenant
		ok     bool
		filter string // the customer query parameter after the scope
	}{
		{"path own", Path("id"), req("GET", "/x/c1", ""), c1, true, ""},
		{"path other", Path("id"), req("GET", "/x/c2", ""), c1, false, ""},
		{"path reseller's", Path("id"), req("GET", "/x/c3", ""), r1, true, ""},
		{"path not reseller's", Path("id"), req("GET", "/x/c2", ""), r1, false, ""},
		{"path provider's own", Path("id"), req("GET", "/x/own", ""), r1, false, ""},
		{"path unknown", Path("id"), req("GET", "/x/nobody", ""), c1, false, ""},
		{"query forced for a customer", Query("customer"), req("GET", "/x/?", ""), c1, true, "c1"},
		{"query missing for a reseller", Query("customer"), req("GET", "/x/?", ""), r1, false, ""},
		{"query other", Query("list", "customer"), req("GET", "/x/?list=c2", ""), c1, false, ""},
		{"query provider list", Query("list", "customer"), req("GET", "/x/?list=*", ""), r1, false, ""},
		{"filtered reseller", Filtered("customer"), req("GET", "/x/?", ""), r1, true, ""},
		{"filtered other", Filtered("customer"), req("GET", "/x/?customer=c2", ""), r1, false, ""},
		{"json own", JSONField("list", "customer"), req("POST", "/x/", `{"list":"c1","address":"a@b"}`), c1, true, ""},
		{"json other", JSONField("list", "customer"), req("POST", "/x/", `{"customer":"c2"}`), c1, false, ""},
		{"json none", JSONField("list", "customer"), req("POST", "/x/", `{"address":"a@b"}`), c1, false, ""},
		{"json oversized", JSONField("list"), req("POST", "/x/", `{"list":"c1","note":"`+strings.Repeat("x", 70<<10)+`"}`), c1, false, ""},
		{"json garbage", JSONField("list"), req("POST", "/x/", `{"list":`), c1, false, ""},
		{"methods listed", Methods(map[string]Scope{"GET": Path("id")}), req("HEAD", "/x/c1", ""), c1, true, ""},
		{"methods unlisted", Methods(map[string]Scope{"GET": Path("id")}), req("DELETE", "/x/c1", ""), c1, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := tc.scope(tc.req, tc.t)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if ok && r.URL.Query().Get("customer") != tc.filter {
				t.Errorf("customer filter %q, want %q", r.URL.Query().Get("customer"), tc.filter)
			}
			if ok && tc.req.Method == "POST" {
				b := make([]byte, 100)
				n, _ := r.Body.Read(b)
				if !strings.HasPrefix(string(b[:n]), `{"list"`) {
					t.Errorf("the body was not given back: %q", b[:n])
				}
			}
		})
	}
}

type ownersMap map[string]string

func (m ownersMap) ResellerOf(id string) (string, bool) { r, ok := m[id]; return r, ok }
