package reputation

import (
	"context"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

func TestBackends(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clk := clock.NewFake(t0)
			h := b.open(t, clk)
			be, err := Open(h)
			if err != nil {
				t.Fatal(err)
			}
			const ttl = time.Hour
			t.Run("results count once, per customer and class, matched by queue id", func(t *testing.T) {
				if _, err := be.Remember(ctx, "QA1", Message{Customer: "acme", Bulk: true}, ttl); err != nil {
					t.Fatal(err)
				}
				since := t0.Add(-24 * time.Hour)
				rec := func(r Result) (string, bool, Counts) {
					c, counted, n, err := be.Record(ctx, r, clk.Now(), since, ttl)
					if err != nil {
						t.Fatal(err)
					}
					return c, counted, n
				}
				if c, counted, n := rec(Result{QueueID: "QA1", RcptHash: "r1", Class: Sent, Egress: "192.0.2.10"}); c != "acme" || !counted || n.Sent != 1 {
					t.Fatalf("sent: %q %v %+v", c, counted, n)
				}
				rec(Result{QueueID: "QA1", RcptHash: "r2", Class: Deferred, Egress: "192.0.2.10"})
				rec(Result{QueueID: "QA1", RcptHash: "r2", Class: Deferred, Egress: "192.0.2.10"})
				if _, counted, n := rec(Result{QueueID: "QA1", RcptHash: "r2", Class: HardBounce, Egress: "192.0.2.10"}); !counted || n.Hard != 1 || n.Deferred != 1 {
					t.Fatalf("hard after two deferrals: %v %+v", counted, n)
				}
				if _, counted, n := rec(Result{QueueID: "QA1", RcptHash: "r2", Class: HardBounce, Egress: "192.0.2.10"}); counted || n.Hard != 1 {
					t.Fatalf("the same result read twice was counted: %+v", n)
				}
				if c, counted, _ := rec(Result{QueueID: "NOTOURS", RcptHash: "r1", Class: Sent}); c != "" || counted {
					t.Fatalf("unknown queue id matched %q", c)
				}
				clk.Advance(time.Hour)
				rec(Result{QueueID: "QA1", RcptHash: "r3", Class: PolicyBounce, Egress: "192.0.2.11"})
				tot, err := be.Totals(ctx, []string{"acme", "beta"}, since, clk.Now().Add(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				a := tot["acme"]
				if a.Sent != 1 || a.Hard != 1 || a.Policy != 1 || a.Deferred != 1 || a.Final() != 3 {
					t.Errorf("acme totals %+v", a)
				}
				if a.Egress["192.0.2.10"] != 2 || a.Egress["192.0.2.11"] != 1 {
					t.Errorf("acme egress %+v (deferrals are not deliveries)", a.Egress)
				}
				if b := tot["beta"]; b.Final() != 0 {
					t.Errorf("beta totals %+v", b)
				}
				// The window: the first hour's results fall out.
				tot, _ = be.Totals(ctx, []string{"acme"}, clk.Now().Add(-30*time.Minute), clk.Now().Add(time.Second))
				if a := tot["acme"]; a.Final() != 1 || a.Policy != 1 {
					t.Errorf("last 30 minutes: %+v", a)
				}
			})
			t.Run("listing state, notice claims and history", func(t *testing.T) {
				k := ListingKey{Address: "192.0.2.10", Zone: "zen.example"}
				step := func(o Observation) (Listing, Listing) {
					clk.Advance(time.Minute)
					b, a, err := be.Observe(ctx, k, o, clk.Now(), 3)
					if err != nil {
						t.Fatal(err)
					}
					return b, a
				}
				if b, a := step(Observation{Answered: true}); b.Known || !a.Known || a.Listed {
					t.Fatalf("first answer: before %+v after %+v", b, a)
				}
				b, a := step(Observation{Answered: true, Listed: true, Codes: []string{"127.0.0.4", "127.0.0.2", "127.0.0.2"}})
				if b.Listed || !a.Listed || a.Notified || !a.Since.Equal(clk.Now().Truncate(time.Millisecond)) || len(a.Codes) != 2 || a.Codes[0] != "127.0.0.2" {
					t.Fatalf("listed: before %+v after %+v", b, a)
				}
				since := a.Since
				if _, a := step(Observation{Error: "timeout"}); !a.Listed || a.Error != "timeout" || !a.Since.Equal(since) {
					t.Fatalf("a failed query changed the state: %+v", a)
				}
				if ok, err := be.ClaimNotice(ctx, k); !ok || err != nil {
					t.Fatalf("first claim: %v %v", ok, err)
				}
				if ok, _ := be.ClaimNotice(ctx, k); ok {
					t.Fatal("second claim succeeded: two postmaster mails")
				}
				if err := be.Unclaim(ctx, k); err != nil {
					t.Fatal(err)
				}
				if ok, _ := be.ClaimNotice(ctx, k); !ok {
					t.Fatal("claim after unclaim failed: the mail would never be retried")
				}
				if _, a := step(Observation{Answered: true, Listed: true, Codes: []string{"127.0.0.2"}}); !a.Notified || !a.Since.Equal(since) {
					t.Fatalf("still listed: %+v", a)
				}
				if _, a := step(Observation{Answered: true}); a.Listed || a.Codes != nil {
					t.Fatalf("delisted: %+v", a)
				}
				step(Observation{Answered: true, Listed: true, Codes: []string{"127.0.0.3"}})
				ls, err := be.Listings(ctx, []ListingKey{k, {Address: "192.0.2.99", Zone: "zen.example"}})
				if err != nil {
					t.Fatal(err)
				}
				if len(ls) != 2 || ls[1].Known {
					t.Fatalf("listings %+v", ls)
				}
				hist := ls[0].History
				if len(hist) != 3 || !hist[0].Listed || hist[0].Codes[0] != "127.0.0.3" || hist[1].Listed || !hist[2].Listed {
					t.Errorf("history (newest first, 3 kept) %+v", hist)
				}
			})
		})
	}
}

func TestMemoryStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, err := openMemory(dir+"/reputation.json", clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = m.Remember(ctx, "Q1", Message{Customer: "acme"}, time.Hour)
	_, _, _, _ = m.Record(ctx, Result{QueueID: "Q1", RcptHash: "h", Class: HardBounce}, t0, t0.Add(-time.Hour), time.Hour)
	_, _, _ = m.Observe(ctx, ListingKey{Address: "192.0.2.1", Zone: "z"}, Observation{Answered: true, Listed: true, Codes: []string{"127.0.0.2"}}, t0, 5)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := openMemory(dir+"/reputation.json", clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	tot, _ := m2.Totals(ctx, []string{"acme"}, t0.Add(-time.Hour), t0.Add(time.Second))
	if tot["acme"].Hard != 1 {
		t.Errorf("counts after restart %+v", tot["acme"])
	}
	if _, counted, _, _ := m2.Record(ctx, Result{QueueID: "Q1", RcptHash: "h", Class: HardBounce}, t0, t0.Add(-time.Hour), time.Hour); counted {
		t.Error("a result counted before the restart was counted again")
	}
	ls, _ := m2.Listings(ctx, []ListingKey{{Address: "192.0.2.1", Zone: "z"}})
	if !ls[0].Listed || len(ls[0].History) != 1 {
		t.Errorf("listing after restart %+v", ls[0])
	}
}
