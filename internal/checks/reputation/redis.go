package reputation

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/store"
)

// redisBackend keeps the state in Redis. A customer's keys share its
// Cluster hash tag, so that recording a result is one script in one slot;
// the queue-id map lives outside (the customer is what it tells).
//
//	PREFIX rep:q:QUEUEID                   "customer\tbulk" (TTL queue_id_ttl)
//	PREFIX {c:ID}:rep:seen:QUEUEID         set of counted results (f|hash, d|hash)
//	PREFIX {c:ID}:rep:h:HOUR               hash s h p o d e|EGRESS (TTL 32 days)
//	PREFIX {c:ID}:rep:t                    hash lo hi s h p o d e|EGRESS: the
//	                                       totals of the buckets lo..hi (TTL 32 days)
//	PREFIX rep:bl:{ADDR|ZONE}              hash of the listing state
//	PREFIX rep:blh:{ADDR|ZONE}             list of state changes, newest first
type redisBackend struct {
	h *store.Handle
	// lua is the family's Lua (lua/*.lua), registered on h.
	lua                    *store.Lua
	totalsProc             *store.Proc
	record, observe, claim *redis.Script
}

// luaFiles are the family's Lua; lib.lua holds running_window, shared by
// totals.lua (a batch proc) and record.lua.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// newRedis registers the family's Lua on h and returns the backend.
func newRedis(h *store.Handle) (*redisBackend, error) {
	sub, err := fs.Sub(luaFiles, "lua")
	if err != nil {
		return nil, err
	}
	l, err := h.RegisterLua("reputation", sub)
	if err != nil {
		return nil, err
	}
	r := &redisBackend{h: h, lua: l, totalsProc: l.Proc("totals"), record: l.Script("record"), observe: l.Script("observe"), claim: l.Script("claim")}
	if r.totalsProc == nil || r.record == nil || r.observe == nil || r.claim == nil {
		return nil, errors.New("reputation: a file of lua/ is missing")
	}
	return r, nil
}

func (r *redisBackend) qidKey(qid string) string { return r.h.Key("rep", "q", qid) }
func (r *redisBackend) blKey(k ListingKey) string {
	return r.h.Key("rep", "bl", "{"+k.String()+"}")
}
func (r *redisBackend) blhKey(k ListingKey) string {
	return r.h.Key("rep", "blh", "{"+k.String()+"}")
}
func (r *redisBackend) bucketKey(c string, h int64) string {
	return r.h.CustomerKey(c, "rep", "h", strconv.FormatInt(h, 10))
}

// bucketPrefix is a customer's bucket key without the hour number.
func (r *redisBackend) bucketPrefix(c string) string { return r.h.CustomerKey(c, "rep", "h", "") }

// totalKey is a customer's running-total hash (see lua/totals.lua).
func (r *redisBackend) totalKey(c string) string { return r.h.CustomerKey(c, "rep", "t") }

// oldestBucket is the newest hour whose bucket may have expired at now
// (an hour of slack for the clocks of the MTAs).
func oldestBucket(now time.Time) int64 { return hour(now.Add(-bucketTTL)) + 1 }

func (r *redisBackend) Remember(ctx context.Context, qid string, m Message, ttl time.Duration) (string, error) {
	cmd := r.claimCmd(ctx, qid, m, ttl)
	_ = r.h.Client.Process(ctx, cmd)
	return claimHolder(cmd)
}

// claimCmd sets the queue id's key only if it does not exist, and returns
// the value it had (SET NX GET, Redis 7.0): nil when this call set it.
func (r *redisBackend) claimCmd(ctx context.Context, qid string, m Message, ttl time.Duration) *redis.StringCmd {
	return redis.NewStringCmd(ctx, "set", r.qidKey(qid), r.messageValue(m), "px", ttl.Milliseconds(), "nx", "get")
}

// claimHolder reads a claimCmd's answer: the customer already holding the
// queue id, "" when the claim was recorded.
func claimHolder(cmd *redis.StringCmd) (string, error) {
	v, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", store.Unavailable(err)
	}
	c, _, _ := strings.Cut(v, "\t")
	if c == "" {
		c = "?"
	}
	return c, nil
}

// messageValue is a remembered message as stored: "customer\tbulk".
func (r *redisBackend) messageValue(m Message) string {
	if m.Bulk {
		return m.Customer + "\t1"
	}
	return m.Customer + "\t0"
}

func (r *redisBackend) Record(ctx context.Context, res Result, now, since time.Time, ttl time.Duration) (string, bool, Counts, error) {
	v, err := r.h.Client.Get(ctx, r.qidKey(res.QueueID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, Counts{}, nil
	}
	if err != nil {
		return "", false, Counts{}, store.Unavailable(err)
	}
	c, _, _ := strings.Cut(v, "\t")
	hs := hours(since, now.Add(time.Second))
	wlo, whi := hour(now), hour(now) // an empty window: the current hour
	if len(hs) > 0 {
		wlo, whi = hs[0], hs[len(hs)-1]
	}
	keys := []string{r.h.CustomerKey(c, "rep", "seen", res.QueueID), r.bucketKey(c, hour(now)), r.totalKey(c)}
	eg := ""
	if res.Egress != "" && res.Class.Final() {
		eg = egressPrefix + res.Egress
	}
	out, err := r.record.Run(ctx, r.h.Client, keys, seenMember(res), fieldOf(res.Class), eg,
		int64(ttl/time.Second)+1, int64(bucketTTL/time.Second), hour(now), wlo, whi, r.bucketPrefix(c), oldestBucket(now)).Int64Slice()
	if err != nil {
		return c, false, Counts{}, store.Unavailable(err)
	}
	var cs Counts
	for i := 1; i+4 < len(out); i += 5 {
		cs.Sent += out[i]
		cs.Hard += out[i+1]
		cs.Policy += out[i+2]
		cs.Other += out[i+3]
		cs.Deferred += out[i+4]
	}
	return c, len(out) > 0 && out[0] == 1, cs, nil
}

func (r *redisBackend) Totals(ctx context.Context, customers []string, since, until time.Time) (map[string]Totals, error) {
	hs := hours(since, until)
	pipe := r.h.Client.Pipeline()
	cmds := make(map[string][]*redis.MapStringStringCmd, len(customers))
	for _, c := range customers {
		for _, h := range hs {
			cmds[c] = append(cmds[c], pipe.HGetAll(ctx, r.bucketKey(c, h)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, store.Unavailable(err)
	}
	out := make(map[string]Totals, len(customers))
	for _, c := range customers {
		var t Totals
		for _, cmd := range cmds[c] {
			for f, v := range cmd.Val() {
				n, _ := strconv.ParseInt(v, 10, 64)
				sumFields(&t, f, n)
			}
		}
		out[c] = t
	}
	return out, nil
}

func (r *redisBackend) Observe(ctx context.Context, k ListingKey, o Observation, now time.Time, history int) (Listing, Listing, error) {
	ans, listed := "0", "0"
	if o.Answered {
		ans = "1"
	}
	if o.Listed {
		listed = "1"
	}
	codes := strings.Join(sortedCodes(o.Codes), ",")
	res, err := r.observe.Run(ctx, r.h.Client, []string{r.blKey(k), r.blhKey(k)},
		ans, listed, codes, now.UnixMilli(), o.Error, history).Slice()
	if err != nil {
		return Listing{}, Listing{}, store.Unavailable(err)
	}
	if len(res) != 2 {
		return Listing{}, Listing{}, errors.New("reputation: unexpected script reply")
	}
	return parseListing(k, res[0]), parseListing(k, res[1]), nil
}

func parseListing(k ListingKey, v any) Listing {
	l := Listing{ListingKey: k}
	flat, _ := v.([]any)
	m := map[string]string{}
	for i := 0; i+1 < len(flat); i += 2 {
		ks, _ := flat[i].(string)
		vs, _ := flat[i+1].(string)
		m[ks] = vs
	}
	fillListing(&l, m)
	return l
}

func fillListing(l *Listing, m map[string]string) {
	ms := func(s string) time.Time {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	l.Known = m["known"] == "1"
	l.Listed = m["listed"] == "1"
	if c := m["codes"]; c != "" {
		l.Codes = strings.Split(c, ",")
	}
	l.Since, l.Checked = ms(m["since"]), ms(m["checked"])
	l.Error = m["error"]
	l.Notified = m["notified"] == "1"
}

func (r *redisBackend) ClaimNotice(ctx context.Context, k ListingKey) (bool, error) {
	n, err := r.claim.Run(ctx, r.h.Client, []string{r.blKey(k)}).Int()
	if err != nil {
		return false, store.Unavailable(err)
	}
	return n == 1, nil
}

func (r *redisBackend) Unclaim(ctx context.Context, k ListingKey) error {
	return store.Unavailable(r.h.Client.HSet(ctx, r.blKey(k), "notified", "0").Err())
}

func (r *redisBackend) Listings(ctx context.Context, keys []ListingKey) ([]Listing, error) {
	pipe := r.h.Client.Pipeline()
	states := make([]*redis.MapStringStringCmd, len(keys))
	hist := make([]*redis.StringSliceCmd, len(keys))
	for i, k := range keys {
		states[i] = pipe.HGetAll(ctx, r.blKey(k))
		hist[i] = pipe.LRange(ctx, r.blhKey(k), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, store.Unavailable(err)
	}
	out := make([]Listing, len(keys))
	for i, k := range keys {
		l := Listing{ListingKey: k}
		fillListing(&l, states[i].Val())
		for _, e := range hist[i].Val() {
			parts := strings.SplitN(e, "|", 3)
			if len(parts) != 3 {
				continue
			}
			n, _ := strconv.ParseInt(parts[0], 10, 64)
			ch := Change{Time: time.UnixMilli(n).UTC(), Listed: parts[1] == "1"}
			if parts[2] != "" {
				ch.Codes = strings.Split(parts[2], ",")
			}
			l.History = append(l.History, ch)
		}
		out[i] = l
	}
	return out, nil
}

// scripts are the Lua scripts of this backend and the batch script, for
// store.Handle.LoadScripts.
func (r *redisBackend) scripts() []*redis.Script { return append(r.lua.Scripts(), r.h.BatchScript()) }
