package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
)

// ErrCircuitOpen is the error of a store call refused at once because the
// store failed moments ago (it wraps into ErrUnavailable like any outage).
var ErrCircuitOpen = errors.New("store circuit open: failing fast until a probe succeeds")

// Breaker back-off bounds: after the first failure calls fail fast for
// breakerMinBackoff, doubling at each failed probe up to breakerMaxBackoff,
// so that Redis coming back is seen within about half a second.
const (
	breakerMinBackoff = 100 * time.Millisecond
	breakerMaxBackoff = 500 * time.Millisecond
)

// Breaker is a circuit breaker around the Redis client (a go-redis hook,
// so it is independent of the commands and scripts the backends run).
// Closed, every call goes to Redis. A call that fails because Redis is
// unreachable or too slow opens it: for a short back-off every call fails
// at once with ErrCircuitOpen, without dialling or waiting for the
// client's retries, so each message gets its on_error outcome immediately.
// After the back-off one PING at a time, in the background, probes
// recovery (the messages never wait for it); its success closes the
// breaker, its failure doubles the back-off. Redis error replies (a
// missing script, a wrong type) are answers, not outages: they do not
// count.
type Breaker struct {
	clk   clock.Clock // wall time of the back-off (not the store's clock)
	log   atomic.Pointer[slog.Logger]
	probe func(ctx context.Context) error // one PING

	mu        sync.Mutex
	open      bool
	until     time.Time // calls fail fast until then
	backoff   time.Duration
	probing   bool
	openedAt  time.Time
	failedNow uint64 // calls failed fast in the current outage

	opens      atomic.Uint64 // times the breaker opened
	fastFailed atomic.Uint64 // calls failed fast, all outages
	probes     atomic.Uint64 // probes finished
}

// probeTimeout bounds one probe.
const probeTimeout = time.Second

// BreakerStats are the breaker's counters.
type BreakerStats struct {
	Open       bool
	Opens      uint64
	FastFailed uint64
	Probes     uint64
}

func newBreaker(clk clock.Clock, probe func(ctx context.Context) error) *Breaker {
	return &Breaker{clk: clk, probe: probe}
}

// SetLogger sets where the breaker logs its transitions.
func (b *Breaker) SetLogger(l *slog.Logger) { b.log.Store(l) }

func (b *Breaker) logger() *slog.Logger {
	if l := b.log.Load(); l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// Stats returns the breaker's counters.
func (b *Breaker) Stats() BreakerStats {
	b.mu.Lock()
	open := b.open
	b.mu.Unlock()
	return BreakerStats{Open: open, Opens: b.opens.Load(), FastFailed: b.fastFailed.Load(), Probes: b.probes.Load()}
}

// allow says whether a call may go to Redis. While the breaker is open it
// may not, and once the back-off is over it starts the probe.
func (b *Breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true
	}
	b.failedNow++
	b.fastFailed.Add(1)
	if !b.probing && !b.clk.Now().Before(b.until) && b.probe != nil {
		b.probing = true
		go b.runProbe()
	}
	return false
}

// runProbe pings the store once and records the outcome.
func (b *Breaker) runProbe() {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), passedKey{}, true), probeTimeout)
	defer cancel()
	err := b.probe(ctx)
	b.done(true, err)
	b.probes.Add(1)
}

// done records the outcome of a call that went to Redis.
func (b *Breaker) done(probe bool, err error) {
	failed := isOutage(err)
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	now := b.clk.Now()
	switch {
	case failed && !b.open:
		b.open, b.backoff, b.openedAt, b.failedNow = true, breakerMinBackoff, now, 0
		b.until = now.Add(b.backoff)
		b.opens.Add(1)
		b.logger().Error("store unreachable: failing fast (on_error) until a probe succeeds", "err", err.Error(), "backoff", b.backoff.String())
	case failed && probe:
		b.backoff = min(2*b.backoff, breakerMaxBackoff)
		b.until = now.Add(b.backoff)
	case !failed && probe && b.open:
		b.open = false
		b.logger().Warn("store reachable again", "outage", now.Sub(b.openedAt).Round(time.Millisecond).String(),
			"calls_failed_fast", b.failedNow,
			"note", "messages the checks passed with on_error during the outage were not counted; see aupguard_findings_total{finding=\"check_error\"}")
	}
}

// isOutage tells a failure of the store (unreachable, too slow, not ready)
// from an answer or the caller giving up.
func isOutage(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, ErrCircuitOpen) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		// Replies; only those that say the server cannot serve count.
		msg := re.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// DialHook implements redis.Hook.
func (b *Breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

// passedKey marks a context whose call the breaker let through: the
// commands the client sends on its own inside that call (HELLO, AUTH,
// CLIENT SETINFO on a new connection, which go through the same hooks) are
// part of it, not calls of their own.
type passedKey struct{}

// ProcessHook implements redis.Hook.
func (b *Breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(passedKey{}) != nil {
			return next(ctx, cmd)
		}
		if !b.allow() {
			err := fmt.Errorf("%w (%s)", ErrCircuitOpen, cmd.Name())
			cmd.SetErr(err)
			return err
		}
		err := next(context.WithValue(ctx, passedKey{}, true), cmd)
		b.done(false, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (b *Breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(passedKey{}) != nil {
			return next(ctx, cmds)
		}
		if !b.allow() {
			err := fmt.Errorf("%w (pipeline)", ErrCircuitOpen)
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err := next(context.WithValue(ctx, passedKey{}, true), cmds)
		b.done(false, err)
		return err
	}
}
