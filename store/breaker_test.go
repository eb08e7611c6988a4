package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/clock"
	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/internal/testenv"
)

// TestBreakerAgainstRealRedis kills a real redis-server under the client:
// the first failing call opens the breaker, the calls after it fail at
// once without reaching the network, one probe at a time tests recovery
// after the back-off, and a successful probe closes it when Redis is back.
func TestBreakerAgainstRealRedis(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	clk := clock.NewFake(time.Now())
	cfg := config.StoreConfig{Backend: Redis, Timeout: 500 * time.Millisecond}
	cfg.Redis.Addrs = []string{srv.Addr()}
	cfg.Redis.DialTimeout = time.Second
	h, err := Open(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	if err := h.Client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A missing key and an error reply are answers, not outages.
	if err := h.Client.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if err := h.Client.Incr(ctx, "k").Err(); err == nil {
		t.Fatal("INCR of a string succeeded")
	}
	if st := h.Breaker.Stats(); st.Open || st.Opens != 0 {
		t.Fatalf("breaker %+v after answers", st)
	}

	srv.Kill()
	if err := h.Client.Get(ctx, "k").Err(); err == nil || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("first call with Redis down: %v, want the real failure", err)
	}
	if st := h.Breaker.Stats(); !st.Open || st.Opens != 1 {
		t.Fatalf("breaker %+v after a failure, want open", st)
	}
	for i := range 100 {
		err := h.Client.Get(ctx, "k").Err()
		if !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("call %d while open: %v, want ErrCircuitOpen", i, err)
		}
		if !errors.Is(Unavailable(err), ErrUnavailable) {
			t.Fatal("a fast failure is not an ErrUnavailable")
		}
	}
	if _, err := h.Client.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "k"); return nil }); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("pipeline while open: %v", err)
	}
	if st := h.Breaker.Stats(); st.FastFailed != 101 {
		t.Fatalf("fast failures %d, want 101", st.FastFailed)
	}

	// After the back-off one call probes; Redis is still down: it fails
	// for real and the back-off grows.
	clk.Advance(breakerMinBackoff)
	if err := h.Client.Get(ctx, "k").Err(); err == nil || errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("probe: %v, want the real failure", err)
	}
	clk.Advance(breakerMinBackoff)
	if err := h.Client.Get(ctx, "k").Err(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("after a failed probe the back-off doubles: %v", err)
	}

	srv.Start()
	clk.Advance(breakerMaxBackoff)
	if err := h.Client.Get(ctx, "k").Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("probe with Redis back: %v", err)
	}
	if st := h.Breaker.Stats(); st.Open {
		t.Fatalf("breaker still open after a good probe: %+v", st)
	}
	if err := h.Client.Set(ctx, "k2", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestBreakerOneProbeAtATime: while the probe is out, the other calls
// fail fast.
func TestBreakerOneProbeAtATime(t *testing.T) {
	clk := clock.NewFake(time.Now())
	b := newBreaker(clk)
	b.done(false, errors.New("dial tcp: connection refused"))
	clk.Advance(breakerMinBackoff)
	ok, probe := b.allow()
	if !ok || !probe {
		t.Fatal("no probe after the back-off")
	}
	for range 10 {
		if ok, _ := b.allow(); ok {
			t.Fatal("a second call went through while the probe is out")
		}
	}
	b.done(true, nil)
	if ok, probe := b.allow(); !ok || probe {
		t.Fatal("not closed after a good probe")
	}
}
