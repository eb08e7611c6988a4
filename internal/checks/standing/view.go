package standing

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/store"
)

// View is one gateway's copy of the stops, read by the check at every
// MAIL FROM without a store round trip of its own. On Redis the copy is
// checked at most every refresh: the check then adds one GET of the
// generation counter to the stage's batch, and reads the stops again only
// when the generation changed (a stop was set or removed somewhere). On
// the memory backend the generation is read in process at every message.
type View struct {
	b       Backend
	redis   *redisBackend
	clk     clock.Clock
	refresh atomic.Int64 // time.Duration
	log     *slog.Logger

	snap atomic.Pointer[snapshot]
	mu   sync.Mutex // one reload at a time
	// warned rate-limits the log line of a failed refresh.
	warned atomic.Int64
}

// snapshot is the stops as read at one generation.
type snapshot struct {
	gen   int64
	at    time.Time
	stops map[string]Stop
}

// NewView makes a view of b, checked every refresh (Redis).
func NewView(b Backend, clk clock.Clock, refresh time.Duration, log *slog.Logger) *View {
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &View{b: b, clk: clk, log: log}
	v.refresh.Store(int64(refresh))
	v.redis, _ = b.(*redisBackend)
	return v
}

// SetRefresh sets how old the copy may be (a reloaded config).
func (v *View) SetRefresh(d time.Duration) { v.refresh.Store(int64(d)) }

func (v *View) every() time.Duration { return time.Duration(v.refresh.Load()) }

// stale reports whether the view must ask the store's generation now.
func (v *View) stale(now time.Time) bool {
	s := v.snap.Load()
	return s == nil || now.Sub(s.at) >= v.every()
}

// genCmd is the generation GET added to a stage's batch.
func (v *View) genCmd(ctx context.Context, b *store.Batch) *redis.StringCmd {
	cmd := redis.NewStringCmd(ctx, "get", v.redis.genKey)
	b.Side(cmd)
	return cmd
}

// current returns the stops in force, after taking in the generation the
// batch read (cmd; nil when none was read). A failed read keeps the copy
// held (logged, at most once a minute): a store outage does not lift a
// stop, nor stop mail that no stop names.
func (v *View) current(ctx context.Context, cmd *redis.StringCmd) *snapshot {
	now := v.clk.Now()
	s := v.snap.Load()
	if v.redis == nil {
		gen, _ := v.b.Gen(ctx)
		if s != nil && s.gen == gen {
			return s
		}
		return v.reload(ctx, now)
	}
	if cmd == nil {
		if s != nil && !v.stale(now) {
			return s
		}
		cmd = redis.NewStringCmd(ctx, "get", v.redis.genKey)
		sctx, cancel := v.redis.h.Context(ctx)
		_ = v.redis.h.Client.Process(sctx, cmd)
		cancel()
	}
	gen, err := parseGen(cmd)
	if err != nil {
		v.failed(err)
		return s
	}
	if s != nil && s.gen == gen {
		if now.Sub(s.at) >= v.every() {
			v.snap.CompareAndSwap(s, &snapshot{gen: s.gen, at: now, stops: s.stops})
		}
		return s
	}
	return v.reload(ctx, now)
}

// reload reads every stop again (the generation changed).
func (v *View) reload(ctx context.Context, now time.Time) *snapshot {
	v.mu.Lock()
	defer v.mu.Unlock()
	gen, err := v.b.Gen(ctx)
	if err != nil {
		v.failed(err)
		return v.snap.Load()
	}
	if s := v.snap.Load(); s != nil && s.gen == gen && (v.redis == nil || now.Sub(s.at) < v.every()) {
		return s
	}
	list, err := v.b.List(ctx)
	if err != nil {
		v.failed(err)
		return v.snap.Load()
	}
	s := &snapshot{gen: gen, at: now, stops: make(map[string]Stop, len(list))}
	for _, st := range list {
		s.stops[st.Key()] = st
	}
	v.snap.Store(s)
	return s
}

func (v *View) failed(err error) {
	now := v.clk.Now().Unix()
	if last := v.warned.Load(); now-last >= 60 && v.warned.CompareAndSwap(last, now) {
		v.log.Warn("standing: reading the stops failed; keeping the copy held", "err", err)
	}
}

// Match returns the most severe stop in force for the keys, if any.
func (s *snapshot) match(now time.Time, keys ...string) (Stop, bool) {
	if s == nil || len(s.stops) == 0 {
		return Stop{}, false
	}
	var best Stop
	found := false
	for _, k := range keys {
		if k == "" {
			continue
		}
		st, ok := s.stops[k]
		if !ok || !st.Active(now) {
			continue
		}
		if !found || st.Action.rank() > best.Action.rank() {
			best, found = st, true
		}
	}
	return best, found
}

// Has reports whether a stop of key is in force in the view's copy (as
// last read; no store round trip).
func (v *View) Has(key string) bool {
	_, ok := v.snap.Load().match(v.clk.Now(), key)
	return ok
}

// InForce counts the stops in force in the view's copy, by action.
func (v *View) InForce() map[Action]int {
	out := map[Action]int{}
	s := v.snap.Load()
	if s == nil {
		return out
	}
	now := v.clk.Now()
	for _, st := range s.stops {
		if st.Active(now) {
			out[st.Action]++
		}
	}
	return out
}
