package ratelimit

import (
	"context"
	"embed"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io/fs"
	"strconv"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/store"
)

// luaFiles are the family's Lua (lua/run.lua, lua/release.lua), procs of
// the store's batch script registered at Open: a direct Run or Release is
// a batch of one.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// redisBackend runs every stage's ops in one script call (EVALSHA, reloaded
// by go-redis on NOSCRIPT). All keys of a call are one customer's, under
// its hash tag, so the call is valid on a Cluster.
type redisBackend struct {
	h *store.Handle
	// run and release are the family's procs, registered on h.
	run, release *store.Proc
	// clk, when set (tests only), replaces Redis TIME so that the shared
	// table test drives both backends with one fake clock.
	clk clock.Clock
	// wall is this gateway's clock, an estimate of Redis TIME for picking
	// the recipient generations a call sends (the script decides by
	// TIME). It is the system clock, not the store handle's Clock, which
	// is the memory backend's time and may be a test's fake one.
	wall clock.Clock
}

// newRedis registers the family's Lua on h and returns the backend.
func newRedis(h *store.Handle) (*redisBackend, error) {
	sub, err := fs.Sub(luaFiles, "lua")
	if err != nil {
		return nil, err
	}
	l, err := h.RegisterLua("ratelimit", sub)
	if err != nil {
		return nil, err
	}
	r := &redisBackend{h: h, wall: clock.System{}, run: l.Proc("run"), release: l.Proc("release")}
	if r.run == nil || r.release == nil {
		return nil, errors.New("ratelimit: lua/run.lua or lua/release.lua missing")
	}
	return r, nil
}

func (r *redisBackend) nowArg() string {
	if r.clk == nil {
		return ""
	}
	return strconv.FormatInt(r.clk.Now().UnixMilli(), 10)
}

// recipientShards is the number of hashes a customer's recipients are
// spread over in one generation: with Redis's default
// hash-max-listpack-entries (128), up to 8192 recipients of a customer per
// generation stay in the compact listpack encoding (docs/capacity.md).
const recipientShards = 64

// rcptField turns a recipient counter key (a keyed hash already) into its
// 8-byte field and its shard.
func rcptField(key string) (field, shard string) {
	h := fnv.New64a()
	h.Write([]byte(key))
	sum := h.Sum64()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], sum)
	return string(b[:]), strconv.FormatUint(sum%recipientShards, 10)
}

// clockMs is this gateway's time in ms (the fake clock in tests).
func (r *redisBackend) clockMs() int64 {
	if r.clk != nil {
		return r.clk.Now().UnixMilli()
	}
	return r.wall.Now().UnixMilli()
}

// encode turns ops into KEYS and ARGV (8 fields per op, see run.lua).
// For release, a window op carries the bucket it reserved instead of the
// bucket size.
func (r *redisBackend) encode(customer string, ops []Op, release bool, args []any) ([]string, []any) {
	keys := make([]string, 0, len(ops)+2)
	names := make([]string, 0, len(ops)) // op.Key of keys[i], "" for the others
	key := func(k string) int {
		for i, n := range names {
			if n == k {
				return i + 1
			}
		}
		keys = append(keys, k)
		names = append(names, k)
		return len(keys)
	}
	pad := func() {
		for len(names) < len(keys) {
			names = append(names, "")
		}
	}
	for _, op := range ops {
		var ki int
		var a, b, c, d, e string
		switch op.Kind {
		case KindSpike:
			keys = append(keys, r.h.CustomerKey(customer, "rl", op.Key+":base"), r.h.CustomerKey(customer, "rl", op.Key+":win"))
			pad()
			ki = len(keys) - 1
			sp := op.Spike
			a = strconv.FormatFloat(sp.Factor, 'f', -1, 64)
			d = strconv.FormatInt(sp.Floor, 10) + "|" + strconv.FormatInt(sp.Baseline, 10)
			e = strconv.FormatFloat(sp.Alpha, 'f', -1, 64)
		case KindRecipient:
			// Three generations' shard hashes (G-1, G, G+1 by this
			// gateway's clock; the script picks by the store's).
			field, shard := rcptField(op.Key)
			keep := ms(op.Keep)
			if keep <= 0 {
				keep = ms(op.Period)
			}
			g := r.clockMs() / keep
			ki = len(keys) + 1
			for _, x := range [3]int64{g - 1, g, g + 1} {
				keys = append(keys, r.h.CustomerKey(customer, "rl", "rr", strconv.FormatInt(keep/60000, 10)+"m", strconv.FormatInt(x, 10), shard))
			}
			pad()
			a = strconv.FormatInt(op.Limit, 10)
			d = field + "|" + strconv.FormatInt(g, 10)
			if release {
				d += "|" + strconv.FormatInt(op.Bucket, 10)
			}
			e = strconv.FormatInt(keep, 10)
		default:
			ki = key(r.opKey(customer, op))
			a = strconv.FormatInt(op.Limit, 10)
		}
		b = strconv.FormatInt(ms(op.Period), 10)
		c = strconv.FormatInt(op.N, 10)
		switch op.Kind {
		case KindWindow:
			d = strconv.FormatInt(bucketMs(op.Period), 10)
			if release {
				d = strconv.FormatInt(op.Bucket, 10)
			}
		}
		args = append(args, kindArg(op.Kind), ki, op.Name, a, b, c, d, e)
	}
	return keys, args
}

// opKey is the Redis key of a rate or window op: the customer's counter
// (its logins' too), or the reseller's under the reseller's own hash tag
// {r:ID}.
func (r *redisBackend) opKey(customer string, op Op) string {
	if op.Scope == ScopeReseller {
		return r.h.Prefix + "{r:" + op.Owner + "}:rl:" + op.Key
	}
	return r.h.CustomerKey(customer, "rl", op.Key)
}

// Run implements Backend in one round trip.
func (r *redisBackend) Run(ctx context.Context, customer string, mode Mode, ops []Op) (Result, error) {
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	sb := r.h.NewBatch()
	p := r.queueRun(sb, customer, mode, ops)
	_ = sb.Exec(ctx)
	return p.result()
}

func num(x any) int64 {
	switch t := x.(type) {
	case int64:
		return t
	case string:
		n, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return 0
		}
		return int64(n)
	}
	return 0
}

func flt(x any) float64 {
	s, _ := x.(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func itoa(n int) string { return strconv.Itoa(n) }

func unixMilli(ms int64) time.Time { return time.UnixMilli(ms) }

// Release implements Backend in one round trip.
func (r *redisBackend) Release(ctx context.Context, customer string, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	ctx, cancel := r.h.Context(ctx)
	defer cancel()
	sb := r.h.NewBatch()
	calls := r.queueRelease(sb, customer, ops)
	err := sb.Exec(ctx)
	for _, c := range calls {
		if _, cerr := c.Result(); cerr != nil {
			return cerr
		}
	}
	return err
}

// The kinds as script arguments, boxed once (this runs for every op).
var (
	argRate      any = string(KindRate)
	argWindow    any = string(KindWindow)
	argRecipient any = string(KindRecipient)
	argSpike     any = string(KindSpike)
)

func kindArg(k Kind) any {
	switch k {
	case KindRate:
		return argRate
	case KindWindow:
		return argWindow
	case KindRecipient:
		return argRecipient
	case KindSpike:
		return argSpike
	}
	return string(k)
}
