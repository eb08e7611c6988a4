package clock

import (
	"context"
	"time"
)

// WithTimeout is context.WithTimeout(ctx, d) without a context of its own
// when ctx already ends no later than d from now: then ctx itself is
// returned with a cancel func that does nothing. The deadline in effect is
// the same either way (the earlier of ctx's and now+d), but the hot path
// (a stage bounding a store batch bounding nothing shorter, a check
// bounding a DNS lookup) does not make a cancelCtx, register it with its
// parent and unregister it again for a bound that cannot bite.
//
// Deadlines are wall-clock time (time.Now), whatever Clock the caller
// uses for its data: a context's deadline is real time.
func WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return WithDeadline(ctx, time.Now().Add(d))
}

// WithDeadline is context.WithDeadline(ctx, dl) without a context of its
// own when ctx's deadline is no later than dl (see WithTimeout).
func WithDeadline(ctx context.Context, dl time.Time) (context.Context, context.CancelFunc) {
	if cur, ok := ctx.Deadline(); ok && !cur.After(dl) {
		return ctx, nop
	}
	return context.WithDeadline(ctx, dl)
}

func nop() {}
