package standing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/store"
)

// The Redis layout: every stop is a field of one hash (scope:id → JSON),
// and every change raises one counter, both under the hash tag
// {standing} (one Cluster slot, so that a script changes both). Content
// findings are a sorted set per sender (score: ms, member: ref).
var (
	// putScript: KEYS stops, gen; ARGV field, onlyNew, value.
	putScript = redis.NewScript(`
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1`)
	// removeScript: KEYS stops, gen; ARGV field.
	removeScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return v`)
	// countScript: KEYS the sender's set; ARGV now ms, ref, window ms,
	// samples.
	countScript = redis.NewScript(`
local now, win = tonumber(ARGV[1]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
redis.call('PEXPIRE', KEYS[1], win)
local n = redis.call('ZCARD', KEYS[1])
local s = redis.call('ZRANGE', KEYS[1], -tonumber(ARGV[4]), -1)
return {n, s}`)
)

type redisBackend struct {
	h                *store.Handle
	stopsKey, genKey string
}

func newRedisBackend(h *store.Handle) *redisBackend {
	return &redisBackend{h: h, stopsKey: h.Key("{standing}", "stops"), genKey: h.Key("{standing}", "gen")}
}

func (r *redisBackend) Put(ctx context.Context, s Stop, onlyNew bool) (bool, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return false, err
	}
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	only := "0"
	if onlyNew {
		only = "1"
	}
	n, err := putScript.Run(ctx, r.h.Client, []string{r.stopsKey, r.genKey}, s.Key(), only, b).Int()
	if err != nil {
		return false, store.Unavailable(err)
	}
	return n == 1, nil
}

func (r *redisBackend) Remove(ctx context.Context, scope Scope, id string) (Stop, bool, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	v, err := removeScript.Run(ctx, r.h.Client, []string{r.stopsKey, r.genKey}, Key(scope, id)).Text()
	if errors.Is(err, redis.Nil) {
		return Stop{}, false, nil
	}
	if err != nil {
		return Stop{}, false, store.Unavailable(err)
	}
	var s Stop
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return Stop{Scope: scope, ID: id}, true, nil
	}
	return s, true, nil
}

func (r *redisBackend) List(ctx context.Context) ([]Stop, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	m, err := r.h.Client.HGetAll(ctx, r.stopsKey).Result()
	if err != nil {
		return nil, store.Unavailable(err)
	}
	return decodeStops(m), nil
}

// decodeStops reads the hash's values; a value that does not decode (a
// hand-written key) is skipped.
func decodeStops(m map[string]string) []Stop {
	out := make([]Stop, 0, len(m))
	for k, v := range m {
		var s Stop
		if json.Unmarshal([]byte(v), &s) != nil || s.Key() != k {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

func (r *redisBackend) Gen(ctx context.Context) (int64, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	return parseGen(r.h.Client.Get(ctx, r.genKey))
}

// parseGen reads the generation counter's GET (no key: 0).
func parseGen(c *redis.StringCmd) (int64, error) {
	v, err := c.Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, store.Unavailable(err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("standing: generation %q: %w", v, err)
	}
	return n, nil
}

func (r *redisBackend) countKey(key string) string { return r.h.Key("standing", "content", key) }

func (r *redisBackend) Count(ctx context.Context, key, ref string, now time.Time, window time.Duration) (int, []string, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	v, err := countScript.Run(ctx, r.h.Client, []string{r.countKey(key)}, now.UnixMilli(), ref, window.Milliseconds(), MaxSamples).Slice()
	if err != nil {
		return 0, nil, store.Unavailable(err)
	}
	if len(v) != 2 {
		return 0, nil, fmt.Errorf("standing: count script replied %d values", len(v))
	}
	n, _ := v[0].(int64)
	var refs []string
	if l, ok := v[1].([]any); ok {
		for _, x := range l {
			if s, ok := x.(string); ok {
				refs = append(refs, s)
			}
		}
	}
	return int(n), refs, nil
}

func (r *redisBackend) ResetCount(ctx context.Context, key string) error {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	return store.Unavailable(r.h.Client.Del(ctx, r.countKey(key)).Err())
}
