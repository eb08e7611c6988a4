package reputation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestStoreOutage: with Redis down the check fails with a store error (the
// engine turns it into on_error, defer by default) and the reader counts
// the result as lost instead of blocking; once Redis is back both work.
func TestStoreOutage(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	clk := clock.NewFake(t0)
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 300 * time.Millisecond,
		Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:", DialTimeout: 200 * time.Millisecond}}, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	svc := newTestService(t, h, testConfig(t, ""), clk, nil)
	chk := NewCheck(svc)
	rd := NewReader(svc)
	rd.Retry = 0
	ctx := context.Background()
	tx := &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: "QOUT1"}
	chk.Finish(ctx, tx, true)

	r.Stop()
	if _, err := chk.EOM(ctx, tx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("EOM with Redis down: %v, want a store.ErrUnavailable", err)
	}
	rd.Line(ctx, "QOUT1: to=<a@example.org>, relay=none, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (x)")
	if rd.Stats.StoreErrors.Load() != 1 {
		t.Fatalf("lost results %d, want 1", rd.Stats.StoreErrors.Load())
	}

	r.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rd.Line(ctx, "QOUT1: to=<a@example.org>, relay=none, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (x)")
		if rd.Stats.ByClass[1].Load() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("results not counted after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := chk.EOM(ctx, tx); err != nil {
		t.Fatalf("EOM after recovery: %v", err)
	}
}
