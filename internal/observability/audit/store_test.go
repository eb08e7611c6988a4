package audit

import (
	"context"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestTrailOnBothStores records, queries and expires the trail on the
// memory store (persisted, reopened) and on a real Redis.
func TestTrailOnBothStores(t *testing.T) {
	for _, backend := range []string{store.Memory, store.Redis} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			sc := config.StoreConfig{Backend: backend, Path: dir, Timeout: 5 * time.Second}
			if backend == store.Redis {
				sc.Redis.Addrs = []string{testenv.StartRedis(t, testenv.RedisOptions{}).Addr()}
			}
			clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			retention := 48 * time.Hour
			open := func() (*Log, *store.Handle) {
				h, err := store.Open(sc, clk)
				if err != nil {
					t.Fatal(err)
				}
				l, err := Open(h, clk, func() time.Duration { return retention })
				if err != nil {
					t.Fatal(err)
				}
				return l, h
			}
			l, h := open()
			ctx := WithActor(context.Background(), Actor{Who: "cli:ops", From: "cli"})
			if err := Record(ctx, l, Entry{Action: "token.create", Target: "tok-a", After: "customer acme"}); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Hour)
			if err := l.Record(ctx, Entry{Who: "tok-a", From: "192.0.2.7:4000", Action: "POST /api/optouts", Target: "acme"}); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Hour)
			if err := Record(ctx, l, Entry{Action: "customer.set", Target: "acme", Before: "{}", After: string(make([]byte, 2000))}); err != nil {
				t.Fatal(err)
			}
			es, err := l.Entries(ctx, Query{})
			if err != nil || len(es) != 3 {
				t.Fatalf("entries: %v %v", es, err)
			}
			if es[0].Action != "customer.set" || es[2].Action != "token.create" || es[2].Who != "cli:ops" || es[2].From != "cli" {
				t.Errorf("order or actor: %+v", es)
			}
			if len(es[0].After) > 600 {
				t.Errorf("summary not clipped: %d bytes", len(es[0].After))
			}
			if es, _ := l.Entries(ctx, Query{Who: "tok-a"}); len(es) != 1 || es[0].From != "192.0.2.7:4000" {
				t.Errorf("who filter: %+v", es)
			}
			if es, _ := l.Entries(ctx, Query{Since: clk.Now().Add(-90 * time.Minute)}); len(es) != 2 {
				t.Errorf("since filter: %d entries, want 2", len(es))
			}
			if es, _ := l.Entries(ctx, Query{Limit: 1}); len(es) != 1 || es[0].Action != "customer.set" {
				t.Errorf("limit: %+v", es)
			}
			if backend == store.Memory {
				h.Close()
				l, h = open()
			}
			defer h.Close()
			// Past the retention the oldest are gone, on read and from the store.
			clk.Advance(retention - 90*time.Minute)
			if es, _ := l.Entries(ctx, Query{}); len(es) != 2 {
				t.Errorf("after the retention of the first: %d entries, want 2", len(es))
			}
			if err := Record(ctx, l, Entry{Action: "flag.clear", Target: "acme"}); err != nil {
				t.Fatal(err)
			}
			if backend == store.Redis {
				n, err := h.Client.ZCard(ctx, h.Key("audit")).Result()
				if err != nil || n != 3 {
					t.Errorf("Redis keeps %d entries, want 3 (the expired one dropped): %v", n, err)
				}
			} else if n := len(l.b.(*memoryLog).Entries); n != 3 {
				t.Errorf("memory keeps %d entries, want 3", n)
			}
		})
	}
}

// TestDescribeOnlyInsideARequest: Describe outside a recording request
// does nothing; inside, the last description wins.
func TestDescribeOnlyInsideARequest(t *testing.T) {
	Describe(context.Background(), "x", "y", "", "") // no Pending: nothing, no panic
	p := &Pending{}
	ctx := WithPending(context.Background(), p)
	if _, ok := p.Entry(); ok {
		t.Fatal("described before Describe")
	}
	Describe(ctx, "a", "t1", "", "")
	Describe(ctx, "b", "t2", "before", "after")
	e, ok := p.Entry()
	if !ok || e.Action != "b" || e.Target != "t2" || e.Before != "before" {
		t.Fatalf("pending: %+v %v", e, ok)
	}
	if err := Record(ctx, nil, e); err != nil {
		t.Fatal("a nil recorder records nothing, without error")
	}
}
