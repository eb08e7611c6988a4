package content

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// errSlotTimeout is the error of a message that found every scanning slot
// of an engine taken for the whole timeout.
var errSlotTimeout = errors.New("all scanning slots busy for the whole timeout")

// errStopped is returned by a body writer that wants no more chunks (its
// check already knows its outcome: an error, or a message over the limit).
var errStopped = errors.New("content: scan stopped")

// replyUnavailable is the temporary reply of a scan that could not be made
// (engine down, slow or busy) when on_error defers.
var replyUnavailable = policy.MustReply(451, "4.3.0", "Content scanner unavailable, try again later")

// limiter bounds the messages scanned at once by one engine.
type limiter chan struct{}

// acquire takes a slot, waiting at most d.
func (l limiter) acquire(d time.Duration) error {
	select {
	case l <- struct{}{}:
		return nil
	default:
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case l <- struct{}{}:
		return nil
	case <-tm.C:
		return errSlotTimeout
	}
}

// release gives a slot back.
func (l limiter) release() { <-l }

// unavailable wraps an engine failure so that a deferring on_error
// replies 451 4.3.0.
func unavailable(engine string, err error) error {
	return policy.ErrorWithReply(fmt.Errorf("%s: %w", engine, err), replyUnavailable)
}

// ctxErr is a context's error, for stages whose context may be nil-safe.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return nil
	}
	return ctx.Err()
}
