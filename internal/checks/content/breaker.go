package content

import (
	"errors"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// errCircuitOpen is the error of a scan refused at once because the engine
// failed moments ago.
var errCircuitOpen = errors.New("circuit open: engine failed moments ago, failing fast until a probe succeeds")

// Back-off bounds of the breaker: the first failure opens it for
// breakerMinBackoff, each failed probe doubles that up to
// breakerMaxBackoff (the store's breaker uses the same bounds).
const (
	breakerMinBackoff = 100 * time.Millisecond
	breakerMaxBackoff = 2 * time.Second
)

// breaker is a circuit breaker in front of one scanning engine (clamd,
// rspamd). Closed, every message goes to the engine. A failure (refused
// connection, time-out) opens it: for the back-off every message fails at
// once with errCircuitOpen and gets its on_error outcome without waiting
// for the engine. After the back-off the next message is let through as
// the probe; its success closes the breaker, its failure doubles the
// back-off. The store's breaker (store.Breaker) is a go-redis hook with a
// PING probe, so it does not fit an engine spoken to per message.
type breaker struct {
	clk clock.Clock

	mu      sync.Mutex
	open    bool
	until   time.Time
	backoff time.Duration
	probing bool
}

// allow says whether a scan may go to the engine; probe is set when this
// scan is the one probing recovery (its outcome, or abandon, must be
// reported).
func (b *breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true, false
	}
	if b.probing || b.clk.Now().Before(b.until) {
		return false, false
	}
	b.probing = true
	return true, true
}

// done records a scan's outcome: failed is an outage (not a verdict).
func (b *breaker) done(failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if !failed {
		b.open, b.backoff = false, 0
		return
	}
	switch {
	case !b.open || b.backoff == 0:
		b.backoff = breakerMinBackoff
	case b.backoff < breakerMaxBackoff:
		b.backoff = min(2*b.backoff, breakerMaxBackoff)
	}
	b.open = true
	b.until = b.clk.Now().Add(b.backoff)
}

// isOpen reports whether the breaker is open.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// abandon ends a scan that gave no outcome (the transaction ended first):
// a probe's turn passes to the next message.
func (b *breaker) abandon(wasProbe bool) {
	if !wasProbe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}
