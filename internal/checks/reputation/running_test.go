package reputation

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// readRunning reads a customer's totals over [since, until) the way the
// end-of-message batch does: the running total, in a batch of its own.
func readRunning(t *testing.T, h *store.Handle, r *redisBackend, customer string, now, since, until time.Time, write bool) Totals {
	t.Helper()
	sb := h.NewBatch()
	call := r.totals(sb, customer, now, since, until, write)
	if err := sb.Exec(context.Background()); err != nil {
		t.Fatalf("batch: %v", err)
	}
	tot, err := (&eomPending{totals: call}).result()
	if err != nil {
		t.Fatalf("totals: %v", err)
	}
	return tot
}

// directSum sums the window's buckets one by one (Backend.Totals on Redis).
func directSum(t *testing.T, r *redisBackend, customer string, since, until time.Time) Totals {
	t.Helper()
	all, err := r.Totals(context.Background(), []string{customer}, since, until)
	if err != nil {
		t.Fatal(err)
	}
	return all[customer]
}

func sameTotals(a, b Totals) bool {
	if len(a.Egress) == 0 {
		a.Egress = nil
	}
	if len(b.Egress) == 0 {
		b.Egress = nil
	}
	return reflect.DeepEqual(a, b)
}

// redisBackends are the Redis flavours of backends(): standalone and a
// three-master Cluster.
func redisBackends() []backend { return backends()[1:] }

// TestRunningTotalEqualsBuckets records deliveries over 30 hours with a
// fake clock and, at every step, compares the running total the
// end-of-message batch reads with a direct sum of the window's buckets;
// the window changes size in some rows, reads are sparse in others.
func TestRunningTotalEqualsBuckets(t *testing.T) {
	type row struct {
		name   string
		window func(h int) time.Duration // by hours since the start
		read   func(step int) bool       // whether the step reads
		record func(step int) bool       // whether the step records results
		dry    bool                      // every read is a dry run
	}
	always := func(int) bool { return true }
	fixed := func(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }
	rows := []row{
		{"24h window", fixed(24 * time.Hour), always, always, false},
		{"3h window", fixed(3 * time.Hour), always, always, false},
		{"results every third hour: reads move the total", fixed(5 * time.Hour), always, func(s int) bool { return s%12 < 2 }, false},
		{"grows 3h to 24h at hour 12", func(h int) time.Duration {
			if h < 12 {
				return 3 * time.Hour
			}
			return 24 * time.Hour
		}, always, always, false},
		{"shrinks 24h to 2h at hour 20, then 48h at hour 26", func(h int) time.Duration {
			switch {
			case h < 20:
				return 24 * time.Hour
			case h < 26:
				return 2 * time.Hour
			}
			return 48 * time.Hour
		}, always, always, false},
		{"sparse reads (idle hours between)", fixed(6 * time.Hour), func(s int) bool { return s%23 == 0 || s%29 == 0 }, always, false},
		{"dry run writes nothing", fixed(24 * time.Hour), always, func(s int) bool { return s%12 < 2 }, true},
	}
	classes := []Class{Sent, HardBounce, Sent, PolicyBounce, OtherBounce, Deferred, Sent}
	egress := []string{"192.0.2.10", "", "2001:db8::25"}
	for _, be := range redisBackends() {
		t.Run(be.name, func(t *testing.T) {
			for _, rw := range rows {
				t.Run(rw.name, func(t *testing.T) {
					clk := clock.NewFake(t0)
					h := be.open(t, clk)
					r, err := newRedis(h)
					if err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					const customer = "acme"
					n := 0
					reads, moved := 0, 0
					for step := 0; step < 30*4; step++ { // 30 hours in quarters
						now := clk.Now()
						w := rw.window(step / 4)
						since, until := now.Add(-w), now.Add(time.Second)
						for i := 0; rw.record(step) && i < 1+step%3; i++ {
							n++
							qid := fmt.Sprintf("Q%d", n)
							if _, err := r.Remember(ctx, qid, Message{Customer: customer}, time.Hour); err != nil {
								t.Fatal(err)
							}
							res := Result{QueueID: qid, RcptHash: strconv.Itoa(n), Class: classes[n%len(classes)], Egress: egress[n%len(egress)]}
							_, counted, cs, err := r.Record(ctx, res, now, since, time.Hour)
							if err != nil || !counted {
								t.Fatalf("record %d: counted %v err %v", n, counted, err)
							}
							if want := directSum(t, r, customer, since, until).Counts; cs != want {
								t.Fatalf("step %d: Record's counts %+v, buckets %+v", step, cs, want)
							}
						}
						if rw.read(step) {
							reads++
							prior, err := h.Client.HGetAll(ctx, r.totalKey(customer)).Result()
							if err != nil {
								t.Fatal(err)
							}
							got := readRunning(t, h, r, customer, now, since, until, !rw.dry)
							want := directSum(t, r, customer, since, until)
							if !sameTotals(got, want) {
								t.Fatalf("step %d (hour %d, window %v): running %+v, buckets %+v", step, step/4, w, got, want)
							}
							if want.Final() == 0 {
								t.Fatalf("step %d: nothing counted: the comparison proves nothing", step)
							}
							after, err := h.Client.HGetAll(ctx, r.totalKey(customer)).Result()
							if err != nil {
								t.Fatal(err)
							}
							switch {
							case rw.dry && !reflect.DeepEqual(prior, after):
								t.Fatalf("step %d: a dry run wrote the running total: %v, then %v", step, prior, after)
							case !rw.dry && (after["lo"] != strconv.FormatInt(hour(since), 10) || after["hi"] != strconv.FormatInt(hour(now), 10)):
								t.Fatalf("step %d: running total %v, want lo %d hi %d", step, after, hour(since), hour(now))
							}
							if !reflect.DeepEqual(prior, after) {
								moved++
							}
						}
						clk.Advance(15 * time.Minute)
					}
					if reads == 0 {
						t.Fatal("no reads")
					}
					t.Logf("%d reads, %d moved or rebuilt the running total", reads, moved)
					if !rw.dry {
						ttl, err := h.Client.TTL(ctx, r.totalKey(customer)).Result()
						if err != nil || ttl <= 0 || ttl > bucketTTL {
							t.Errorf("running total TTL %v (%v), want in (0, %v]", ttl, err, bucketTTL)
						}
					}
				})
			}
		})
	}
}

// TestRunningTotalRebuild: a running total that is missing (buckets written
// by the layout before it), unparsable, wrong, or older than the buckets'
// TTL is rebuilt from the buckets.
func TestRunningTotalRebuild(t *testing.T) {
	for _, be := range redisBackends() {
		t.Run(be.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			h := be.open(t, clk)
			r, err := newRedis(h)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			const customer = "beta"
			now := clk.Now()
			since, until := now.Add(-24*time.Hour), now.Add(time.Second)
			// The old layout: buckets only, as the follower wrote them.
			for i, hr := range hours(since, until) {
				k := r.bucketKey(customer, hr)
				if err := h.Client.HIncrBy(ctx, k, "s", int64(10+i)).Err(); err != nil {
					t.Fatal(err)
				}
				h.Client.HIncrBy(ctx, k, "h", int64(i%3))
				h.Client.HIncrBy(ctx, k, egressPrefix+"192.0.2.10", int64(10+i))
			}
			// A bucket before the window is not counted.
			h.Client.HIncrBy(ctx, r.bucketKey(customer, hour(since)-1), "h", 1000)
			want := directSum(t, r, customer, since, until)
			if want.Sent == 0 || want.Hard == 0 {
				t.Fatalf("setup: %+v", want)
			}
			check := func(name string) {
				t.Helper()
				if got := readRunning(t, h, r, customer, now, since, until, true); !sameTotals(got, want) {
					t.Fatalf("%s: running %+v, buckets %+v", name, got, want)
				}
				if got := readRunning(t, h, r, customer, now, since, until, true); !sameTotals(got, want) {
					t.Fatalf("%s, read again: running %+v, buckets %+v", name, got, want)
				}
				m, _ := h.Client.HGetAll(ctx, r.totalKey(customer)).Result()
				if m["lo"] != strconv.FormatInt(hour(since), 10) || m["hi"] != strconv.FormatInt(hour(now), 10) || m["s"] != strconv.FormatInt(want.Sent, 10) {
					t.Fatalf("%s: running total %v", name, m)
				}
			}
			check("missing (old layout)")
			corrupt := map[string][]any{
				"unparsable lo":           {"lo", "x"},
				"no hi":                   {"hi", nil},
				"negative after subtract": {"s", "-5", "lo", strconv.FormatInt(hour(since)-1, 10)},
				"older than the TTL":      {"lo", strconv.FormatInt(oldestBucket(now), 10), "hi", strconv.FormatInt(hour(now), 10), "s", "1"},
				"far from the window":     {"lo", strconv.FormatInt(hour(since)-500, 10), "hi", strconv.FormatInt(hour(now)-480, 10)},
			}
			for name, kv := range corrupt {
				for i := 0; i < len(kv); i += 2 {
					f := kv[i].(string)
					if kv[i+1] == nil {
						h.Client.HDel(ctx, r.totalKey(customer), f)
					} else {
						h.Client.HSet(ctx, r.totalKey(customer), f, kv[i+1])
					}
				}
				check(name)
			}
		})
	}
}

// commandCalls returns the calls of each command from INFO commandstats.
func commandCalls(tb testing.TB, c redis.UniversalClient) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	for k, st := range testenv.CommandStats(tb, c) {
		out[k] = st.Calls
	}
	return out
}

// TestEOMRedisCommandsConstant: one message's end-of-message batch issues
// the same Redis commands whatever the bounce window's length (the
// running total, not a read per hourly bucket); counted with INFO
// commandstats around the real PrepareEOM + EOM path.
func TestEOMRedisCommandsConstant(t *testing.T) {
	for _, be := range redisBackends() {
		t.Run(be.name, func(t *testing.T) {
			per := map[string]map[string]int64{}
			for _, window := range []string{"24h", "72h"} {
				clk := clock.NewFake(t0)
				h := be.open(t, clk)
				svc := newTestService(t, h, testConfig(t, "reputation:\n  bounces:\n    min_volume: 20\n    warn: 0.02\n    act: 0.05\n    window: "+window+"\n"), clk, nil)
				rd := NewReader(svc)
				chk := NewCheck(svc)
				ctx := context.Background()
				tx := &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: "QIDacme"}
				chk.Finish(ctx, tx, true)
				feed(t, rd, "QIDacme", "sent", "2.0.0", 30, 0)
				feed(t, rd, "QIDacme", "bounced", "5.1.1", 3, 100)
				eom := func(qid string) []policy.Finding {
					t.Helper()
					tx := &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: qid}
					sb := h.NewBatch()
					chk.PrepareEOM(ctx, tx, sb)
					if err := sb.Exec(ctx); err != nil {
						t.Fatal(err)
					}
					fs, err := chk.EOM(ctx, tx)
					if err != nil {
						t.Fatal(err)
					}
					return fs
				}
				eom("Q1") // the first read of the hour moves (here: builds) the running total
				clk.Advance(time.Minute)
				before := commandCalls(t, h.Client)
				fs := eom("Q2")
				after := commandCalls(t, h.Client)
				if len(fs) != 1 || fs[0].Name != FindingHigh {
					t.Fatalf("window %s: findings %+v (3 of 33: above act)", window, fs)
				}
				d := map[string]int64{}
				for k, v := range after {
					if n := v - before[k]; n > 0 && !connectionCommand(k) {
						d[k] = n
					}
				}
				t.Logf("window %s: commands of one message's EOM batch: %v", window, d)
				if reads := d["hgetall"] + d["hmget"] + d["hget"]; reads == 0 || reads > 2 {
					t.Errorf("window %s: %d hash reads per message, want 1 or 2: %v", window, reads, d)
				}
				per[window] = d
			}
			if !reflect.DeepEqual(per["24h"], per["72h"]) {
				t.Errorf("commands per message depend on the window: 24h %v, 72h %v", per["24h"], per["72h"])
			}
		})
	}
}

// connectionCommand reports the commands of a client's connection set-up
// and of the counting itself, which are not the message's.
func connectionCommand(k string) bool {
	switch k {
	case "info", "hello", "ping", "cluster|nodes", "cluster|slots", "cluster|shards":
		return true
	}
	return strings.HasPrefix(k, "client|")
}
