package gateway

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// Engine holds the current State and creates a Session per MTA connection.
// It is safe for concurrent use.
type Engine struct {
	state     atomic.Pointer[State]
	clock     clock.Clock
	log       *slog.Logger
	observers []Observer
	stageObs  []StageObserver
}

// NewEngine starts an engine on st. Observers receive every decision.
func NewEngine(st *State, clk clock.Clock, log *slog.Logger, observers ...Observer) *Engine {
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{clock: clk, log: log}
	for _, o := range observers {
		if o == nil {
			continue
		}
		e.observers = append(e.observers, o)
		if so, ok := o.(StageObserver); ok {
			e.stageObs = append(e.stageObs, so)
		}
	}
	e.state.Store(st)
	return e
}

// State returns the current State.
func (e *Engine) State() *State { return e.state.Load() }

// Swap installs a new State (config reload). Transactions under way finish
// on the State they started with: each session holds its own pointer, and
// the old State is garbage once the last of them ends (no check holds a
// resource that needs closing; the store is the daemon's).
func (e *Engine) Swap(st *State) { e.state.Store(st) }

// Close drops the current State; sessions under way keep theirs.
func (e *Engine) Close() { e.state.Store(nil) }

// refAlphabet avoids look-alike characters, since customers read reference
// ids out of bounce messages to the postmaster.
const refAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// newRef returns a 10-character reference id (50 random bits).
func newRef() string {
	var b [10]byte
	n := rand.Uint64()
	for i := range b {
		b[i] = refAlphabet[n&31]
		n >>= 5
	}
	return string(b[:])
}

func (e *Engine) observe(d *Decision) {
	for _, o := range e.observers {
		o.Observe(d)
	}
}

func (e *Engine) observeStage(stage string, start time.Time) {
	if len(e.stageObs) == 0 {
		return
	}
	d := e.clock.Now().Sub(start)
	for _, o := range e.stageObs {
		o.ObserveStage(stage, d)
	}
}

// stageContext bounds the work behind one reply (no context of its own
// when ctx already ends sooner, clock.WithTimeout).
func (e *Engine) stageContext(ctx context.Context, st *State) (context.Context, context.CancelFunc) {
	return clock.WithTimeout(ctx, st.Config.Milter.DecisionTimeout)
}
