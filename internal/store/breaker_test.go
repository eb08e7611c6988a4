package store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
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
	h, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.Breaker.clk = clk // drive the back-off by hand
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

	// After the back-off a call still fails at once, and starts one
	// probe in the background; Redis is still down: the probe fails and
	// the back-off grows.
	waitProbes := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for h.Breaker.Stats().Probes < n {
			if time.Now().After(deadline) {
				t.Fatalf("probe %d never finished", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	clk.Advance(breakerMinBackoff)
	if err := h.Client.Get(ctx, "k").Err(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("call after the back-off: %v, want a fast failure (the probe is PING)", err)
	}
	waitProbes(1)
	clk.Advance(breakerMinBackoff)
	h.Client.Get(ctx, "k")
	if st := h.Breaker.Stats(); st.Probes != 1 || !st.Open {
		t.Fatalf("after a failed probe the back-off doubles, no new probe yet: %+v", st)
	}

	srv.Start()
	clk.Advance(breakerMaxBackoff)
	if err := h.Client.Get(ctx, "k").Err(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("call that starts the probe: %v", err)
	}
	waitProbes(2)
	if st := h.Breaker.Stats(); st.Open {
		t.Fatalf("breaker still open after a good probe: %+v", st)
	}
	if err := h.Client.Set(ctx, "k2", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestBreakerOneProbeAtATime: while the probe is out, every call fails
// fast and no second probe starts; a good probe closes the breaker.
func TestBreakerOneProbeAtATime(t *testing.T) {
	clk := clock.NewFake(time.Now())
	release := make(chan struct{})
	var started atomic.Int32
	b := newBreaker(clk, func(context.Context) error {
		started.Add(1)
		<-release
		return nil
	})
	b.done(false, errors.New("dial tcp: connection refused"))
	if b.allow() {
		t.Fatal("a call went through right after the failure")
	}
	clk.Advance(breakerMinBackoff)
	for range 10 {
		if b.allow() {
			t.Fatal("a call went through while the probe is out")
		}
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Probes < 1 {
		if time.Now().After(deadline) {
			t.Fatal("probe never finished")
		}
		time.Sleep(time.Millisecond)
	}
	if n := started.Load(); n != 1 {
		t.Fatalf("%d probes started, want 1", n)
	}
	if !b.allow() {
		t.Fatal("not closed after a good probe")
	}
}
