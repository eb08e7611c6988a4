package standing

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// backends returns a memory store (with a file) and a Redis store, for
// the parity tests.
func backends(t *testing.T) map[string]*store.Handle {
	t.Helper()
	mem, err := store.Open(config.StoreConfig{Backend: "memory", Path: filepath.Join(t.TempDir(), "state")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	red, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: []string{rd.Addr()}, KeyPrefix: "t:"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close(); red.Close() })
	return map[string]*store.Handle{"memory": mem, "redis": red}
}

// TestBackendParity: both backends store, replace, refuse a second
// automatic flag, list, remove and count alike, and raise the generation
// at each change only.
func TestBackendParity(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	for name, h := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b, err := BackendOf(h)
			if err != nil {
				t.Fatal(err)
			}
			gen := func() int64 {
				g, err := b.Gen(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return g
			}
			g0 := gen()
			s := Stop{Scope: ScopeCustomer, ID: "acme", Action: ActionDefer, Reason: "unpaid", Source: SourceManual, Who: "api", When: t0}
			if ok, err := b.Put(ctx, s, false); !ok || err != nil {
				t.Fatalf("put: %v %v", ok, err)
			}
			s2 := s
			s2.Action, s2.Source = ActionHold, SourceContent
			if ok, err := b.Put(ctx, s2, true); ok || err != nil {
				t.Fatalf("an automatic flag over an existing stop: stored=%v err=%v, want not stored", ok, err)
			}
			if g := gen(); g != g0+1 {
				t.Fatalf("generation %d after one change, want %d", g, g0+1)
			}
			login := Stop{Scope: ScopeLogin, ID: "web@acme.example", Action: ActionReject, Reason: "stolen", Source: SourceManual, Who: "cli:root", When: t0, Until: t0.Add(time.Hour)}
			if _, err := b.Put(ctx, login, false); err != nil {
				t.Fatal(err)
			}
			l, err := b.List(ctx)
			if err != nil || len(l) != 2 || l[0].Key() != "customer:acme" || l[0].Action != ActionDefer || !l[1].Until.Equal(login.Until) {
				t.Fatalf("list: %+v %v", l, err)
			}
			got, ok, err := b.Remove(ctx, ScopeCustomer, "acme")
			if !ok || err != nil || got.Reason != "unpaid" {
				t.Fatalf("remove: %+v %v %v", got, ok, err)
			}
			if _, ok, _ := b.Remove(ctx, ScopeCustomer, "acme"); ok {
				t.Fatal("removed twice")
			}
			if g := gen(); g != g0+3 {
				t.Fatalf("generation %d after three changes, want %d", g, g0+3)
			}
			for i, c := range []struct {
				at   time.Duration
				want int
			}{{0, 1}, {10 * time.Minute, 2}, {50 * time.Minute, 3}, {75 * time.Minute, 2}} {
				n, refs, err := b.Count(ctx, "customer:acme", "R"+string(rune('A'+i)), t0.Add(c.at), time.Hour)
				if err != nil || n != c.want || len(refs) != c.want || refs[len(refs)-1] != "R"+string(rune('A'+i)) {
					t.Fatalf("count %d at +%s: %d %v %v, want %d", i, c.at, n, refs, err, c.want)
				}
			}
			if err := b.ResetCount(ctx, "customer:acme"); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := b.Count(ctx, "customer:acme", "RZ", t0.Add(80*time.Minute), time.Hour); n != 1 {
				t.Fatalf("count after reset: %d, want 1", n)
			}
		})
	}
}

// TestMemoryStopsSurviveRestart: the memory backend keeps its stops in
// store.path.
func TestMemoryStopsSurviveRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	open := func() Backend {
		h, err := store.Open(config.StoreConfig{Backend: "memory", Path: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		b, err := BackendOf(h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := Stop{Scope: ScopeReseller, ID: "resell", Action: ActionHold, Reason: "audit", Source: SourceManual, Who: "api", When: time.Now().UTC()}
	if _, err := open().Put(context.Background(), s, false); err != nil {
		t.Fatal(err)
	}
	l, err := open().List(context.Background())
	if err != nil || len(l) != 1 || l[0].ID != "resell" {
		t.Fatalf("after restart: %+v %v", l, err)
	}
}

// TestCheckAnswersStops: the check answers the most severe stop in force
// of the message's customer, reseller and login, with the reply naming the
// reason; expired stops and other senders' stops change nothing; on both
// backends.
func TestCheckAnswersStops(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	for name, h := range backends(t) {
		b, err := BackendOf(h)
		if err != nil {
			t.Fatal(err)
		}
		put := func(sc Scope, id string, a Action, reason string, until time.Time) {
			s := Stop{Scope: sc, ID: id, Action: a, Reason: reason, Source: SourceManual, Who: "api", When: now, Until: until}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Put(ctx, s, false); err != nil {
				t.Fatal(err)
			}
		}
		put(ScopeCustomer, "held", ActionHold, "content review", time.Time{})
		put(ScopeCustomer, "late", ActionDefer, "Unpaid invoice", time.Time{})
		put(ScopeReseller, "bad-reseller", ActionReject, "Reseller terminated", time.Time{})
		put(ScopeLogin, "web@both.example", ActionReject, "Stolen password", time.Time{})
		put(ScopeCustomer, "both", ActionHold, "review", time.Time{})
		put(ScopeCustomer, "over", ActionReject, "old", now.Add(-time.Minute))
		put(ScopeCustomer, "utf", ActionDefer, "Zahlung fällig", time.Time{})
		c := NewCheck(NewView(b, clk, DefaultRefresh, nil))
		cases := []struct {
			name, customer, reseller, login string
			finding                         string
			code                            int
			text                            string
		}{
			{"no stop", "other", "", "", "", 0, ""},
			{"hold", "held", "", "", FindingHold, 0, ""},
			{"defer names the reason", "late", "", "", FindingDefer, 451, "Mail from this sender is on hold by the provider: Unpaid invoice"},
			{"reseller's stop applies to its customers", "other", "bad-reseller", "", FindingReject, 550, "Reseller terminated"},
			{"login reject beats customer hold", "both", "", "web@both.example", FindingReject, 550, "Stolen password"},
			{"expired stop is no stop", "over", "", "", "", 0, ""},
			{"non-ASCII reason is kept printable", "utf", "", "", FindingDefer, 451, "Zahlung f?llig"},
		}
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				txn := policy.NewTxn(&policy.Conn{ClientAddr: netip.MustParseAddr("192.0.2.1"), AuthLogin: tc.login},
					&policy.Customer{ID: tc.customer, Reseller: tc.reseller}, "REF", now)
				b := h.NewBatch()
				c.PrepareMail(ctx, txn, b)
				if err := b.Exec(ctx); err != nil {
					t.Fatal(err)
				}
				fs, err := c.Mail(ctx, txn)
				if err != nil {
					t.Fatal(err)
				}
				if tc.finding == "" {
					if len(fs) != 0 {
						t.Fatalf("findings %+v, want none", fs)
					}
					return
				}
				if len(fs) != 1 || fs[0].Name != tc.finding || fs[0].Reply.Code() != tc.code || !strings.Contains(fs[0].Reply.Text(), tc.text) {
					t.Fatalf("findings %+v, want %s %d %q", fs, tc.finding, tc.code, tc.text)
				}
				if tc.code != 0 && fs[0].Reply.Enhanced() != map[int]string{451: "4.7.1", 550: "5.7.1"}[tc.code] {
					t.Fatalf("enhanced code %s", fs[0].Reply.Enhanced())
				}
			})
		}
	}
}

// TestViewRedisReadsGenerationOnlyWhenStale: on Redis the check adds the
// generation read to the MAIL batch only when its copy is older than the
// refresh, and a stop set elsewhere is seen at the next read.
func TestViewRedisReadsGenerationOnlyWhenStale(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	h := backends(t)["redis"]
	b, _ := BackendOf(h)
	c := NewCheck(NewView(b, clk, 250*time.Millisecond, nil))
	run := func() (int, []policy.Finding) {
		txn := policy.NewTxn(&policy.Conn{}, &policy.Customer{ID: "acme"}, "REF", now)
		sb := h.NewBatch()
		c.PrepareMail(ctx, txn, sb)
		n := sb.Len()
		if err := sb.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		fs, err := c.Mail(ctx, txn)
		if err != nil {
			t.Fatal(err)
		}
		return n, fs
	}
	if n, fs := run(); n != 1 || len(fs) != 0 {
		t.Fatalf("first message: %d batch calls, findings %v; want 1, none", n, fs)
	}
	if n, _ := run(); n != 0 {
		t.Fatalf("within the refresh: %d batch calls, want 0", n)
	}
	if _, err := b.Put(ctx, Stop{Scope: ScopeCustomer, ID: "acme", Action: ActionReject, Reason: "x", Source: SourceManual, Who: "api", When: now}, false); err != nil {
		t.Fatal(err)
	}
	if _, fs := run(); len(fs) != 0 {
		t.Fatal("a copy within its refresh saw the new stop before reading the generation")
	}
	clk.Advance(250 * time.Millisecond)
	if n, fs := run(); n != 1 || len(fs) != 1 || fs[0].Name != FindingReject {
		t.Fatalf("after the refresh: %d batch calls, findings %v; want 1, %s", n, fs, FindingReject)
	}
}
