package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/store"
)

// MaxEntries bounds the trail whatever the retention (a flood of changes
// drops the oldest first).
const MaxEntries = 100000

// DefaultRetention is audit.retention's default.
const DefaultRetention = 365 * 24 * time.Hour

// Query selects entries: newest first, Since and Who (exact) optional,
// at most Limit (default 100, at most MaxEntries).
type Query struct {
	Since time.Time
	Who   string
	Limit int
}

// Log is the trail in the store.
type Log struct {
	b         backend
	clock     clock.Clock
	retention func() time.Duration
}

type backend interface {
	add(ctx context.Context, e Entry, cutoff time.Time) error
	// query returns entries at or after since, newest first; match
	// filters, limit bounds the matches.
	query(ctx context.Context, since time.Time, match func(Entry) bool, limit int) ([]Entry, error)
}

// Open returns the trail on a store handle: a Redis sorted set under the
// handle's prefix, or the memory backend (persisted under store.path as
// audit.json). retention is read at each write (a reload changes it).
func Open(h *store.Handle, clk clock.Clock, retention func() time.Duration) (*Log, error) {
	if clk == nil {
		clk = clock.System{}
	}
	if retention == nil {
		retention = func() time.Duration { return DefaultRetention }
	}
	l := &Log{clock: clk, retention: retention}
	if h.Client != nil {
		l.b = &redisLog{h: h}
		return l, nil
	}
	v, err := h.Shared("audit", func() (any, error) { return newMemoryLog(h.Path) })
	if err != nil {
		return nil, err
	}
	l.b = v.(*memoryLog)
	return l, nil
}

// Record stores e (its Time set now when zero) and drops what is older
// than the retention.
func (l *Log) Record(ctx context.Context, e Entry) error {
	now := l.clock.Now().UTC()
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Before, e.After, e.Target = Clip(e.Before), Clip(e.After), Clip(e.Target)
	return l.b.add(ctx, e, now.Add(-l.retention()))
}

// Entries returns the entries q selects, newest first.
func (l *Log) Entries(ctx context.Context, q Query) ([]Entry, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, MaxEntries)
	since := q.Since
	if cut := l.clock.Now().Add(-l.retention()); since.Before(cut) {
		since = cut
	}
	return l.b.query(ctx, since, func(e Entry) bool { return q.Who == "" || e.Who == q.Who }, q.Limit)
}

// memoryLog is the trail of a single MTA, oldest first.
type memoryLog struct {
	mu      sync.Mutex
	file    string
	Entries []Entry `json:"entries"`
}

func newMemoryLog(dir string) (*memoryLog, error) {
	m := &memoryLog{}
	if dir == "" {
		return m, nil
	}
	m.file = filepath.Join(dir, "audit.json")
	if err := atomicfile.ReadJSON(m.file, m); err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return m, nil
}

func (m *memoryLog) add(_ context.Context, e Entry, cutoff time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Entries = append(m.Entries, e)
	sort.SliceStable(m.Entries, func(i, j int) bool { return m.Entries[i].Time.Before(m.Entries[j].Time) })
	i := sort.Search(len(m.Entries), func(i int) bool { return !m.Entries[i].Time.Before(cutoff) })
	i = max(i, len(m.Entries)-MaxEntries)
	if i > 0 {
		m.Entries = append([]Entry(nil), m.Entries[i:]...)
	}
	if m.file == "" {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(m.file, b)
}

func (m *memoryLog) query(_ context.Context, since time.Time, match func(Entry) bool, limit int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Entry
	for i := len(m.Entries) - 1; i >= 0 && len(out) < limit; i-- {
		e := m.Entries[i]
		if e.Time.Before(since) {
			break
		}
		if match(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// redisLog keeps the trail in one sorted set scored by the time in
// milliseconds; each member is a random id and the entry's JSON.
type redisLog struct{ h *store.Handle }

func (r *redisLog) key() string { return r.h.Prefix + "audit" }

func (r *redisLog) add(ctx context.Context, e Entry, cutoff time.Time) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	k := r.key()
	_, err = r.h.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, k, redis.Z{Score: float64(e.Time.UnixMilli()), Member: hex.EncodeToString(id[:]) + " " + string(b)})
		p.ZRemRangeByScore(ctx, k, "-inf", "("+strconv.FormatInt(cutoff.UnixMilli(), 10))
		p.ZRemRangeByRank(ctx, k, 0, -MaxEntries-1)
		return nil
	})
	return store.Unavailable(err)
}

func (r *redisLog) query(ctx context.Context, since time.Time, match func(Entry) bool, limit int) ([]Entry, error) {
	const page = 500
	var out []Entry
	max := "+inf"
	for offset := int64(0); len(out) < limit && offset < MaxEntries; offset += page {
		c, cancel := r.h.Context(ctx)
		ms, err := r.h.Client.ZRevRangeByScore(c, r.key(), &redis.ZRangeBy{Min: strconv.FormatInt(since.UnixMilli(), 10), Max: max, Offset: offset, Count: page}).Result()
		cancel()
		if err != nil {
			return nil, store.Unavailable(err)
		}
		for _, m := range ms {
			var e Entry
			if len(m) < 18 || json.Unmarshal([]byte(m[17:]), &e) != nil {
				continue
			}
			if match(e) && len(out) < limit {
				out = append(out, e)
			}
		}
		if len(ms) < page {
			break
		}
	}
	return out, nil
}
