package optout

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/store"
)

// redisBackend keeps a customer's list, counters, flag and fingerprints
// under its hash tag {c:ID}, so one script can touch them on a Cluster; the
// provider-wide list has its own key (another slot), read in the same
// pipeline as the customer's.
type redisBackend struct {
	h *store.Handle
	// lua is the family's Lua (lua/*.lua), registered on h: the batch
	// procs rcpt, eom, finish and rset, the scripts count, hit, bulk,
	// complain and reported.
	lua                        *store.Lua
	rcpt, eom, finish, rset    *store.Proc
	count, hit, bulk, complain *redis.Script
	reported                   *redis.Script
}

// luaFiles are the family's Lua; lib.lua holds rolling, shared by them.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// newRedis registers the family's Lua on h and returns the backend.
func newRedis(h *store.Handle) (*redisBackend, error) {
	sub, err := fs.Sub(luaFiles, "lua")
	if err != nil {
		return nil, err
	}
	l, err := h.RegisterLua("optout", sub)
	if err != nil {
		return nil, err
	}
	r := &redisBackend{h: h, lua: l,
		rcpt: l.Proc("rcpt"), eom: l.Proc("eom"), finish: l.Proc("finish"), rset: l.Proc("rset"),
		count: l.Script("count"), hit: l.Script("hit"), bulk: l.Script("bulk"), complain: l.Script("complain"), reported: l.Script("reported")}
	if r.rcpt == nil || r.eom == nil || r.finish == nil || r.rset == nil || r.count == nil || r.hit == nil || r.bulk == nil || r.complain == nil || r.reported == nil {
		return nil, errors.New("optout: a file of lua/ is missing")
	}
	return r, nil
}

// importBatch is the number of writes sent per pipeline.
const importBatch = 1000

func (r *redisBackend) listKey(list string) string {
	if list == GlobalList {
		return r.h.Key("optout", "global")
	}
	return r.h.CustomerKey(list, "optout")
}

// sourcesKey is the hash of a list's recorded opt-outs by source (beside
// the list, in its Cluster slot). It is written where opt-outs are
// recorded, never on the per-message path.
func (r *redisBackend) sourcesKey(list string) string {
	if list == GlobalList {
		return r.h.Key("optout", "global", "sources")
	}
	return r.h.CustomerKey(list, "optout", "sources")
}

func (r *redisBackend) counterKey(customer, kind string) string {
	return r.h.CustomerKey(customer, "cnt", kind)
}

func (r *redisBackend) flagKey(customer string) string { return r.h.CustomerKey(customer, "flag") }

// stored is an entry's value in the list hash (list and hash are the key
// and the field).
type stored struct {
	Address string `json:"a,omitempty"`
	Source  string `json:"s"`
	Time    int64  `json:"t"`
	Note    string `json:"n,omitempty"`
}

func encodeEntry(e Entry) string {
	b, _ := json.Marshal(stored{Address: e.Address, Source: e.Source, Time: e.Time.Unix(), Note: e.Note})
	return string(b)
}

func decodeEntry(list, hash, v string) Entry {
	var s stored
	_ = json.Unmarshal([]byte(v), &s)
	return Entry{List: list, Hash: hash, Address: s.Address, Source: s.Source, Time: time.Unix(s.Time, 0).UTC(), Note: s.Note}
}

func (r *redisBackend) Add(ctx context.Context, es []Entry) (int, error) {
	added := 0
	for start := 0; start < len(es); start += importBatch {
		end := min(start+importBatch, len(es))
		cmds := make([]*redis.BoolCmd, 0, end-start)
		_, err := r.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, e := range es[start:end] {
				// HSETNX keeps the first entry of an address.
				cmds = append(cmds, p.HSetNX(ctx, r.listKey(e.List), e.Hash, encodeEntry(e)))
			}
			return nil
		})
		if err != nil {
			return added, store.Unavailable(err)
		}
		// Count the entries that were new, by list and source: one more
		// round trip, on the recording path only.
		bySource := map[[2]string]int64{}
		for i, c := range cmds {
			if c.Val() {
				added++
				e := es[start+i]
				bySource[[2]string{e.List, e.Source}]++
			}
		}
		if len(bySource) > 0 {
			_, err := r.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
				for k, n := range bySource {
					p.HIncrBy(ctx, r.sourcesKey(k[0]), k[1], n)
				}
				return nil
			})
			if err != nil {
				return added, store.Unavailable(err)
			}
		}
	}
	return added, nil
}

func (r *redisBackend) Buckets(ctx context.Context, customer, kind string, w Window, now time.Time) (map[int64]int64, error) {
	m, err := r.h.Client.HGetAll(ctx, r.counterKey(customer, kind)).Result()
	if err != nil {
		return nil, store.Unavailable(err)
	}
	cur := w.index(now)
	out := map[int64]int64{}
	for k, v := range m {
		i, err1 := strconv.ParseInt(k, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil || i <= cur-int64(w.Buckets) || i > cur {
			continue
		}
		out[i] = n
	}
	return out, nil
}

func (r *redisBackend) Sources(ctx context.Context, list string) (map[string]int64, error) {
	m, err := r.h.Client.HGetAll(ctx, r.sourcesKey(list)).Result()
	if err != nil {
		return nil, store.Unavailable(err)
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		out[k] = n
	}
	return out, nil
}

func (r *redisBackend) Remove(ctx context.Context, list, hash string) (bool, error) {
	n, err := r.h.Client.HDel(ctx, r.listKey(list), hash).Result()
	return n > 0, store.Unavailable(err)
}

func (r *redisBackend) Get(ctx context.Context, list, hash string) (Entry, bool, error) {
	v, err := r.h.Client.HGet(ctx, r.listKey(list), hash).Result()
	if errors.Is(err, redis.Nil) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, store.Unavailable(err)
	}
	return decodeEntry(list, hash, v), true, nil
}

func (r *redisBackend) Lookup(ctx context.Context, customer, hash string) (string, error) {
	var own, global *redis.BoolCmd
	_, err := r.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		own = p.HExists(ctx, r.listKey(customer), hash)
		global = p.HExists(ctx, r.listKey(GlobalList), hash)
		return nil
	})
	if err != nil {
		return "", store.Unavailable(err)
	}
	switch {
	case own.Val():
		return customer, nil
	case global.Val():
		return GlobalList, nil
	}
	return "", nil
}

func (r *redisBackend) Scan(ctx context.Context, list string, fn func(Entry) error) error {
	key := r.listKey(list)
	var cursor uint64
	for {
		kv, next, err := r.h.Client.HScan(ctx, key, cursor, "", 1000).Result()
		if err != nil {
			return store.Unavailable(err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if err := fn(decodeEntry(list, kv[i], kv[i+1])); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

func (r *redisBackend) Len(ctx context.Context, list string) (int64, error) {
	n, err := r.h.Client.HLen(ctx, r.listKey(list)).Result()
	return n, store.Unavailable(err)
}

// scripts are the Lua scripts to preload with store.Handle.LoadScripts:
// the family's and the batch script.
func (r *redisBackend) scripts() []*redis.Script {
	return append(r.lua.Scripts(), r.h.BatchScript())
}

func ttlMillis(w Window) string { return strconv.FormatInt(w.Width.Milliseconds()+w.size(), 10) }

func (r *redisBackend) Hit(ctx context.Context, customer string, w Window, threshold int, now time.Time) (int64, bool, error) {
	v, err := r.hit.Run(ctx, r.h.Client, []string{r.counterKey(customer, KindOptedOut), r.flagKey(customer)},
		w.index(now), w.Buckets, ttlMillis(w), threshold, now.Unix()).Slice()
	if err != nil {
		return 0, false, store.Unavailable(err)
	}
	if len(v) != 2 {
		return 0, false, store.Unavailable(errors.New("hit script: unexpected reply"))
	}
	sum, _ := v[0].(int64)
	raised, _ := v[1].(int64)
	return sum, raised == 1, nil
}

func (r *redisBackend) Count(ctx context.Context, customer, kind string, n int64, w Window, now time.Time) (int64, error) {
	sum, err := r.count.Run(ctx, r.h.Client, []string{r.counterKey(customer, kind)}, n, w.index(now), w.Buckets, ttlMillis(w)).Int64()
	return sum, store.Unavailable(err)
}

func (r *redisBackend) Sums(ctx context.Context, customer string, w Window, now time.Time, kinds ...string) ([]int64, error) {
	cmds := make([]*redis.Cmd, len(kinds))
	run := func() error {
		_, err := r.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range kinds {
				cmds[i] = r.count.EvalSha(ctx, p, []string{r.counterKey(customer, k)}, 0, w.index(now), w.Buckets, ttlMillis(w))
			}
			return nil
		})
		return err
	}
	err := run()
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// In a pipeline go-redis cannot fall back to EVAL: load, retry.
		if err = r.h.LoadScripts(ctx, r.count); err == nil {
			err = run()
		}
	}
	if err != nil {
		return nil, store.Unavailable(err)
	}
	out := make([]int64, len(kinds))
	for i, c := range cmds {
		out[i], _ = c.Int64()
	}
	return out, nil
}

func (r *redisBackend) Bulk(ctx context.Context, customer, fp string, rcpts int64, fpWindow time.Duration, rate Window, now time.Time) (BulkState, error) {
	fpKey := r.h.CustomerKey(customer, "fp", "-")
	if fp == "" {
		rcpts = 0
	} else {
		fpKey = r.h.CustomerKey(customer, "fp", fp)
	}
	v, err := r.bulk.Run(ctx, r.h.Client,
		[]string{fpKey, r.flagKey(customer), r.counterKey(customer, KindDelivered), r.counterKey(customer, KindComplaint)},
		rcpts, fpWindow.Milliseconds(), rate.index(now), rate.Buckets).Slice()
	if err != nil {
		return BulkState{}, store.Unavailable(err)
	}
	st, ok := bulkStateOf(v)
	if !ok {
		return BulkState{}, store.Unavailable(errors.New("bulk script: unexpected reply"))
	}
	return st, nil
}

// bulkStateOf reads the bulk script's reply {fingerprint count, flag hash
// as a flat list, delivered, complaints}, run alone or in a stage batch.
func bulkStateOf(v []any) (BulkState, bool) {
	if len(v) != 4 {
		return BulkState{}, false
	}
	var st BulkState
	st.Fingerprint, _ = v[0].(int64)
	if fl, _ := v[1].([]any); len(fl) > 0 {
		m := map[string]string{}
		for i := 0; i+1 < len(fl); i += 2 {
			k, _ := fl[i].(string)
			s, _ := fl[i+1].(string)
			m[k] = s
		}
		st.Flag = flagFromMap(m)
	}
	st.Delivered, _ = v[2].(int64)
	st.Complaints, _ = v[3].(int64)
	return st, true
}

func flagFromMap(m map[string]string) *Flag {
	if len(m) == 0 {
		return nil
	}
	since, _ := strconv.ParseInt(m["since"], 10, 64)
	hits, _ := strconv.ParseInt(m["hits"], 10, 64)
	return &Flag{Reason: m["reason"], Since: time.Unix(since, 0).UTC(), Hits: hits}
}

func (r *redisBackend) GetFlag(ctx context.Context, customer string) (*Flag, error) {
	m, err := r.h.Client.HGetAll(ctx, r.flagKey(customer)).Result()
	if err != nil {
		return nil, store.Unavailable(err)
	}
	return flagFromMap(m), nil
}

func (r *redisBackend) SetFlag(ctx context.Context, customer string, f Flag) error {
	key := r.flagKey(customer)
	_, err := r.h.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, "reason", f.Reason, "since", f.Since.Unix(), "hits", f.Hits)
		return nil
	})
	return store.Unavailable(err)
}

func (r *redisBackend) ClearFlag(ctx context.Context, customer string) (bool, error) {
	var del *redis.IntCmd
	_, err := r.h.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, r.flagKey(customer))
		p.Del(ctx, r.counterKey(customer, KindOptedOut))
		return nil
	})
	if err != nil {
		return false, store.Unavailable(err)
	}
	return del.Val() > 0, nil
}
