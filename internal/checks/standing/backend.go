package standing

import (
	"context"
	"time"

	"github.com/aupguard/aupguard/internal/store"
)

// Backend keeps the stops and the content counters: in process (memory)
// or in Redis, shared by the gateways of one store. Every change of the
// stops raises a generation number, which the gateways read to know that
// their view (View) is out of date.
type Backend interface {
	// Put stores s, replacing a stop of the same key. With onlyNew it
	// stores nothing when a stop of that key exists and reports false
	// (an automatic flag is raised once, by one gateway).
	Put(ctx context.Context, s Stop, onlyNew bool) (bool, error)
	// Remove deletes the stop of scope and id and returns it.
	Remove(ctx context.Context, scope Scope, id string) (Stop, bool, error)
	// List returns every stop, expired ones included.
	List(ctx context.Context) ([]Stop, error)
	// Gen returns the generation number of the stops.
	Gen(ctx context.Context) (int64, error)
	// Count records one content finding (ref) of key at now and returns
	// how many fall within window, and their references, oldest first
	// (at most MaxSamples).
	Count(ctx context.Context, key, ref string, now time.Time, window time.Duration) (int, []string, error)
	// ResetCount forgets key's content findings (a cleared flag starts
	// over).
	ResetCount(ctx context.Context, key string) error
}

// BackendOf returns the one standing backend of h (shared by the check,
// the flags and the admin API of one process).
func BackendOf(h *store.Handle) (Backend, error) {
	v, err := h.Shared("standing", func() (any, error) {
		if h.Client != nil {
			return newRedisBackend(h), nil
		}
		return newMemoryBackend(h)
	})
	if err != nil {
		return nil, err
	}
	return v.(Backend), nil
}
