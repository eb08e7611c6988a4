package events

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/store"
)

// Redis layout (PREFIX is store.redis.key_prefix):
//
//	PREFIX{ev:YYYYMMDD}:s        stream of the day's events (field "e": the JSON event), MAXLEN ~ daily_cap, TTL retention
//	PREFIX{ev:YYYYMMDD}:r        hash ref -> comma-separated stream ids, TTL retention
//	PREFIX{ev:YYYYMMDD}:c        set of the customers with events that day, TTL aggregate_retention
//	PREFIX{c:ID}:evh:YYYYMMDDHH  hash of the customer's counters for one hour, TTL aggregate_retention
//	PREFIX{c:ID}:evd:YYYYMMDD    the same for one day
//
// A day's three keys share a hash tag, as do a customer's counters, so on
// a Cluster each script touches one slot.

// dayScript appends a batch of one day's events: KEYS = stream, refs,
// customers; ARGV = daily cap, retention (s), counters' retention (s),
// then (ref, customer, time in ms, json) per event. Stream ids are the
// event times (clamped so they only grow: ids must increase), so that a
// period maps to an id range.
var dayScript = redis.NewScript(`
local last = 0
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if top[1] then
  last = tonumber(string.match(top[1][1], '^(%d+)'))
end
local n = (#ARGV - 3) / 4
for i = 0, n - 1 do
  local ref, cust, ms, ev = ARGV[4 + i * 4], ARGV[5 + i * 4], tonumber(ARGV[6 + i * 4]), ARGV[7 + i * 4]
  if ms < last then
    ms = last
  end
  last = ms
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], string.format('%d-*', ms), 'e', ev)
  if ref ~= '' then
    local old = redis.call('HGET', KEYS[2], ref)
    if old then
      redis.call('HSET', KEYS[2], ref, old .. ',' .. id)
    else
      redis.call('HSET', KEYS[2], ref, id)
    end
  end
  redis.call('SADD', KEYS[3], cust)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return n
`)

// aggScript adds counters to a customer's hour and day hashes: KEYS = hour
// hash, day hash; ARGV = retention (s), then (field, increment) pairs.
var aggScript = redis.NewScript(`
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
`)

// idSlack widens stream id ranges: an event that reaches the writer after a
// newer one (another MTA's session, a batch boundary) is stored under the
// newer one's id.
const idSlack = 2 * time.Minute

type redisBackend struct {
	h         *store.Handle
	retention time.Duration
	aggKeep   time.Duration
	cap       int64
}

func (r *redisBackend) dayKey(day, kind string) string {
	return r.h.Key("{ev:"+day+"}", kind)
}

func (r *redisBackend) write(ctx context.Context, evs []Event) error {
	type day struct{ args []any }
	days := map[string]*day{}
	type ck struct{ customer, hour string }
	counts := map[ck]map[string]int64{}
	var order []string
	for i := range evs {
		e := &evs[i]
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		dk := dayKey(e.Time)
		d := days[dk]
		if d == nil {
			d = &day{args: []any{r.cap, int64(r.retention / time.Second), int64(r.aggKeep / time.Second)}}
			days[dk] = d
			order = append(order, dk)
		}
		d.args = append(d.args, strings.ToUpper(e.Ref), e.CustomerOf(), e.Time.UnixMilli(), b)
		k := ck{e.CustomerOf(), hourKey(e.Time)}
		c := counts[k]
		if c == nil {
			c = map[string]int64{}
			counts[k] = c
		}
		for _, x := range e.Counters() {
			c[x.Field] += x.N
		}
	}
	pipe := r.h.Client.Pipeline()
	for _, dk := range order {
		dayScript.Run(ctx, pipe, []string{r.dayKey(dk, "s"), r.dayKey(dk, "r"), r.dayKey(dk, "c")}, days[dk].args...)
	}
	for k, c := range counts {
		args := []any{int64(r.aggKeep / time.Second)}
		fields := make([]string, 0, len(c))
		for f := range c {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			args = append(args, f, c[f])
		}
		aggScript.Run(ctx, pipe, []string{r.h.CustomerKey(k.customer, "evh", k.hour), r.h.CustomerKey(k.customer, "evd", k.hour[:8])}, args...)
	}
	_, err := pipe.Exec(ctx)
	return store.Unavailable(err)
}

// days returns the UTC days of [since, until], newest first.
func days(since, until time.Time) []string {
	var out []string
	for t := until.UTC().Truncate(24 * time.Hour); !t.Before(since.UTC().Truncate(24 * time.Hour)); t = t.Add(-24 * time.Hour) {
		out = append(out, dayKey(t))
	}
	return out
}

func (r *redisBackend) bounds(q Query) (since, until time.Time, err error) {
	now := r.h.Clock.Now()
	since, until = q.Since, q.Until
	if since.IsZero() || now.Sub(since) > r.retention {
		since = now.Add(-r.retention)
	}
	if until.IsZero() {
		until = now.Add(idSlack)
	}
	if !since.Before(until) {
		return since, until, fmt.Errorf("empty period %s..%s", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	return since, until, nil
}

func (r *redisBackend) query(ctx context.Context, q Query) ([]Event, error) {
	since, until, err := r.bounds(q)
	if err != nil {
		return nil, err
	}
	ds := days(since, until)
	if q.Ref != "" {
		return r.byRef(ctx, q, ds)
	}
	var out []Event
	for _, d := range ds {
		// Page through the day newest first; stream ids are milliseconds.
		end := "+"
		if ms := until.Add(idSlack).UnixMilli(); dayKey(until) == d {
			end = strconv.FormatInt(ms, 10)
		}
		start := strconv.FormatInt(since.Add(-idSlack).UnixMilli(), 10)
		for len(out) < q.limit() {
			msgs, err := r.h.Client.XRevRangeN(ctx, r.dayKey(d, "s"), end, start, 500).Result()
			if err != nil {
				return nil, store.Unavailable(err)
			}
			for _, m := range msgs {
				if e, ok := decode(m); ok && q.match(&e) {
					out = append(out, e)
					if len(out) == q.limit() {
						break
					}
				}
			}
			if len(msgs) < 500 {
				break
			}
			end = "(" + msgs[len(msgs)-1].ID
		}
		if len(out) >= q.limit() {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

func (r *redisBackend) byRef(ctx context.Context, q Query, ds []string) ([]Event, error) {
	ref := strings.ToUpper(q.Ref)
	pipe := r.h.Client.Pipeline()
	gets := make([]*redis.StringCmd, len(ds))
	for i, d := range ds {
		gets[i] = pipe.HGet(ctx, r.dayKey(d, "r"), ref)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, store.Unavailable(err)
	}
	pipe = r.h.Client.Pipeline()
	var reads []*redis.XMessageSliceCmd
	for i, d := range ds {
		ids, err := gets[i].Result()
		if err != nil {
			continue
		}
		for _, id := range strings.Split(ids, ",") {
			reads = append(reads, pipe.XRange(ctx, r.dayKey(d, "s"), id, id))
		}
	}
	if len(reads) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, store.Unavailable(err)
	}
	var out []Event
	for _, c := range reads {
		for _, m := range c.Val() {
			if e, ok := decode(m); ok && q.match(&e) {
				out = append(out, e)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	if len(out) > q.limit() {
		out = out[:q.limit()]
	}
	return out, nil
}

func decode(m redis.XMessage) (Event, bool) {
	s, _ := m.Values["e"].(string)
	var e Event
	if json.Unmarshal([]byte(s), &e) != nil {
		return e, false
	}
	return e, true
}

func (r *redisBackend) aggregates(ctx context.Context, q AggQuery) ([]Bucket, error) {
	if !q.Since.Before(q.Until) {
		return nil, nil
	}
	custs := []string{q.Customer}
	if q.Customer == "" {
		var err error
		if custs, err = r.customers(ctx, q.Since, q.Until); err != nil {
			return nil, err
		}
	}
	kind, format := "evh", "2006010215"
	if q.Daily {
		kind, format = "evd", "20060102"
	}
	starts := q.starts()
	type pending struct {
		customer string
		start    time.Time
		cmd      *redis.MapStringStringCmd
	}
	var ps []pending
	pipe := r.h.Client.Pipeline()
	for _, c := range custs {
		for _, t := range starts {
			ps = append(ps, pending{c, t, pipe.HGetAll(ctx, r.h.CustomerKey(c, kind, t.Format(format)))})
		}
	}
	if len(ps) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, store.Unavailable(err)
	}
	byKey := map[aggKey]*Bucket{}
	for _, p := range ps {
		m := p.cmd.Val()
		if len(m) == 0 {
			continue
		}
		b := &Bucket{Customer: p.customer, Start: p.start, Span: q.span(), Counts: make(map[string]int64, len(m))}
		for f, v := range m {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				b.Counts[f] = n
			}
		}
		byKey[aggKey{p.customer, p.start.Unix()}] = b
	}
	return sortBuckets(byKey), nil
}

// customers lists the customers with events in the period, from the
// per-day sets.
func (r *redisBackend) customers(ctx context.Context, since, until time.Time) ([]string, error) {
	ds := days(since, until.Add(-time.Nanosecond))
	pipe := r.h.Client.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(ds))
	for i, d := range ds {
		cmds[i] = pipe.SMembers(ctx, r.dayKey(d, "c"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, store.Unavailable(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range cmds {
		for _, id := range c.Val() {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (r *redisBackend) close() error { return nil }
