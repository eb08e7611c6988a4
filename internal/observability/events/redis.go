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

	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
)

// Redis layout (PREFIX is store.redis.key_prefix):
//
//	PREFIX{ev:YYYYMMDD}:s        stream of the day's events (field "e": the JSON event), MAXLEN ~ daily_cap, TTL retention
//	PREFIX{ev:YYYYMMDD}:r        hash ref -> comma-separated stream ids, TTL retention
//	PREFIX{ev:YYYYMMDD}:a        stream of the day's routine events (accepted at end of message, nothing
//	                             against them) in a compact form (field "e", routineRecord), TTL accepted_retention
//	PREFIX{ev:YYYYMMDD}:ar       hash ref -> stream ids of the routine stream, TTL accepted_retention
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
	// accepted is the retention of routine events (<= retention).
	accepted time.Duration
	aggKeep  time.Duration
	cap      int64
}

// streams are a day's two streams, with their ref hashes: the full events
// and the routine ones.
var streams = [2][2]string{{"s", "r"}, {"a", "ar"}}

// routineRecord is a routine event as the routine stream keeps it: what
// an accepted message's event holds, under short names (the stage, the
// action and the empty refusal fields are implied).
type routineRecord struct {
	T int64     `json:"t"`
	R string    `json:"r"`
	Q string    `json:"q,omitempty"`
	C string    `json:"c,omitempty"`
	B string    `json:"b,omitempty"`
	U string    `json:"u,omitempty"` // the login
	L string    `json:"l,omitempty"`
	D string    `json:"d,omitempty"`
	N int       `json:"n,omitempty"`
	H []string  `json:"h,omitempty"`
	P []string  `json:"p,omitempty"`
	S int64     `json:"s,omitempty"`
	M string    `json:"m,omitempty"`
	F []Finding `json:"f,omitempty"`
	X float64   `json:"x,omitempty"`
}

// routine reports whether e goes to the routine stream: a message
// accepted at end of message with nothing decided against it (a monitor
// mode would-be refusal is not routine).
func (e *Event) routine() bool {
	return e.Stage == decision.StageEOM && e.Action == actionAccept && e.Effective == actionAccept &&
		e.Check == "" && e.Finding == "" && e.Detail == "" && e.Code == 0 && e.Enhanced == ""
}

func encodeRoutine(e *Event) ([]byte, error) {
	m := e.Mode
	if m == policy.Enforce.String() {
		m = ""
	}
	return json.Marshal(routineRecord{T: e.Time.UnixMilli(), R: e.Ref, Q: e.QueueID, C: e.Customer, B: e.By, U: e.Login, L: e.Client,
		D: e.SenderDomain, N: e.Rcpts, H: e.RcptHashes, P: e.RcptPlain, S: e.Size, M: m, F: e.Findings, X: e.DurationMS})
}

func decodeRoutine(b []byte) (Event, bool) {
	var r routineRecord
	if json.Unmarshal(b, &r) != nil {
		return Event{}, false
	}
	mode := r.M
	if mode == "" {
		mode = policy.Enforce.String()
	}
	return Event{Time: time.UnixMilli(r.T).UTC(), Stage: decision.StageEOM, Ref: r.R, QueueID: r.Q, Customer: r.C, By: r.B, Login: r.U, Client: r.L,
		SenderDomain: r.D, Rcpts: r.N, RcptHashes: r.H, RcptPlain: r.P, Size: r.S, Action: actionAccept, Effective: actionAccept,
		Mode: mode, Findings: r.F, DurationMS: r.X}, true
}

func (r *redisBackend) acceptedKeep() time.Duration {
	if r.accepted <= 0 || r.accepted > r.retention {
		return r.retention
	}
	return r.accepted
}

func (r *redisBackend) dayKey(day, kind string) string {
	return r.h.Key("{ev:"+day+"}", kind)
}

func (r *redisBackend) write(ctx context.Context, evs []Event) error {
	type day struct{ args []any }
	type dk struct {
		day     string
		routine int
	}
	days := map[dk]*day{}
	type ck struct{ customer, hour string }
	counts := map[ck]map[string]int64{}
	var order []dk
	for i := range evs {
		e := &evs[i]
		k := dk{day: dayKey(e.Time)}
		keep := r.retention
		var b []byte
		var err error
		if e.routine() {
			k.routine = 1
			keep = r.acceptedKeep()
			b, err = encodeRoutine(e)
		} else {
			b, err = json.Marshal(e)
		}
		if err != nil {
			return err
		}
		d := days[k]
		if d == nil {
			d = &day{args: []any{r.cap, int64(keep / time.Second), int64(r.aggKeep / time.Second)}}
			days[k] = d
			order = append(order, k)
		}
		d.args = append(d.args, strings.ToUpper(e.Ref), e.CustomerOf(), e.Time.UnixMilli(), b)
		c := counts[ck{e.CustomerOf(), hourKey(e.Time)}]
		if c == nil {
			c = map[string]int64{}
			counts[ck{e.CustomerOf(), hourKey(e.Time)}] = c
		}
		for _, x := range e.Counters() {
			c[x.Field] += x.N
		}
	}
	pipe := r.h.Client.Pipeline()
	for _, k := range order {
		st := streams[k.routine]
		dayScript.Run(ctx, pipe, []string{r.dayKey(k.day, st[0]), r.dayKey(k.day, st[1]), r.dayKey(k.day, "c")}, days[k].args...)
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
		// Each of the day's streams gives up to the limit; merged, the
		// newest limit events of the day are among them.
		n := len(out)
		for si, st := range streams {
			got, err := r.page(ctx, q, d, st[0], si == 1, since, until, q.limit()-n)
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
		if len(out) > n {
			day := out[n:]
			sort.SliceStable(day, func(i, j int) bool { return day[i].Time.After(day[j].Time) })
			if len(out) > q.limit() {
				out = out[:q.limit()]
			}
		}
		if len(out) >= q.limit() {
			break
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

// page reads one day's stream newest first, up to limit matching events.
func (r *redisBackend) page(ctx context.Context, q Query, d, stream string, routine bool, since, until time.Time, limit int) ([]Event, error) {
	var out []Event
	// Stream ids are milliseconds.
	end := "+"
	if ms := until.Add(idSlack).UnixMilli(); dayKey(until) == d {
		end = strconv.FormatInt(ms, 10)
	}
	start := strconv.FormatInt(since.Add(-idSlack).UnixMilli(), 10)
	for len(out) < limit {
		msgs, err := r.h.Client.XRevRangeN(ctx, r.dayKey(d, stream), end, start, 500).Result()
		if err != nil {
			return nil, store.Unavailable(err)
		}
		for _, m := range msgs {
			if e, ok := decodeAny(m, routine); ok && q.match(&e) {
				out = append(out, e)
				if len(out) == limit {
					break
				}
			}
		}
		if len(msgs) < 500 {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

func decodeAny(m redis.XMessage, routine bool) (Event, bool) {
	if routine {
		s, _ := m.Values["e"].(string)
		return decodeRoutine([]byte(s))
	}
	return decode(m)
}

func (r *redisBackend) byRef(ctx context.Context, q Query, ds []string) ([]Event, error) {
	ref := strings.ToUpper(q.Ref)
	pipe := r.h.Client.Pipeline()
	gets := make([][2]*redis.StringCmd, len(ds))
	for i, d := range ds {
		for si, st := range streams {
			gets[i][si] = pipe.HGet(ctx, r.dayKey(d, st[1]), ref)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, store.Unavailable(err)
	}
	pipe = r.h.Client.Pipeline()
	var reads []*redis.XMessageSliceCmd
	var routine []bool
	for i, d := range ds {
		for si, st := range streams {
			ids, err := gets[i][si].Result()
			if err != nil {
				continue
			}
			for _, id := range strings.Split(ids, ",") {
				reads = append(reads, pipe.XRange(ctx, r.dayKey(d, st[0]), id, id))
				routine = append(routine, si == 1)
			}
		}
	}
	if len(reads) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, store.Unavailable(err)
	}
	var out []Event
	for i, c := range reads {
		for _, m := range c.Val() {
			if e, ok := decodeAny(m, routine[i]); ok && q.match(&e) {
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
