package ratelimit

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// t0 is a Monday 00:00 UTC, on a bucket boundary of every window.
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func redisHandle(t testing.TB, addr string, clk clock.Clock) *store.Handle {
	t.Helper()
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: []string{addr}, KeyPrefix: "t:", PoolSize: 64}}, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// backendKind builds a fresh backend of one kind driven by clk.
type backendKind struct {
	name string
	mk   func(t *testing.T, clk *clock.Fake) Backend
}

func kinds() []backendKind {
	return []backendKind{
		{"memory", func(t *testing.T, clk *clock.Fake) Backend {
			m, err := newMemory(clk, "")
			if err != nil {
				t.Fatal(err)
			}
			return m
		}},
		{"redis", func(t *testing.T, clk *clock.Fake) Backend {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			h := redisHandle(t, r.Addr(), clk)
			b, err := newRedis(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LoadScripts(context.Background(), h.BatchScript()); err != nil {
				t.Fatal(err)
			}
			b.clk = clk
			return b
		}},
	}
}

// step is one call in a scenario.
type step struct {
	advance time.Duration
	release []int // indexes of earlier steps whose ops to release (reserved ops with their results)
	mode    Mode
	ops     []Op
	// expectations
	allowed bool
	binding int
	retry   time.Duration // compared to the second
	used    []int64       // per op, when set
	check   func(t *testing.T, r Result)
}

func rate(name string, limit int64, period time.Duration) Op {
	return Op{Kind: KindRate, Name: name, Key: "rate:" + name, Limit: limit, Period: period, N: 1}
}

func window(name string, limit int64, n int64) Op {
	return Op{Kind: KindWindow, Name: name, Key: "win:" + name, Limit: limit, Period: 24 * time.Hour, N: n}
}

func rcpt(name, who string, limit int64, period time.Duration) Op {
	return Op{Kind: KindRecipient, Name: name, Key: "r:" + who, Limit: limit, Period: period, N: 1, Keep: 24 * time.Hour}
}

func spike(n int64) Op {
	return Op{Kind: KindSpike, Name: "volume_spike", Key: "spike", Period: 10 * time.Minute, N: n,
		Spike: SpikeParams{Factor: 5, Floor: 10, Baseline: 60, Alpha: 0.5}}
}

func ok(mode Mode, ops ...Op) step { return step{mode: mode, ops: ops, allowed: true, binding: -1} }

func denied(binding int, retry time.Duration, ops ...Op) step {
	return step{mode: ModeReserve, ops: ops, binding: binding, retry: retry}
}

var scenarios = []struct {
	name  string
	steps []step
}{
	{"rate allows a burst of the limit, then one per interval", []step{
		ok(ModeReserve, rate("mpm", 3, time.Minute)),
		ok(ModeReserve, rate("mpm", 3, time.Minute)),
		ok(ModeReserve, rate("mpm", 3, time.Minute)),
		denied(0, 20*time.Second, rate("mpm", 3, time.Minute)),
		{advance: 19 * time.Second, mode: ModeReserve, ops: []Op{rate("mpm", 3, time.Minute)}, binding: 0, retry: time.Second},
		{advance: time.Second, mode: ModeReserve, ops: []Op{rate("mpm", 3, time.Minute)}, allowed: true, binding: -1},
		denied(0, 20*time.Second, rate("mpm", 3, time.Minute)),
	}},
	{"rate release gives the unit back", []step{
		ok(ModeReserve, rate("mpm", 2, time.Minute)),
		ok(ModeReserve, rate("mpm", 2, time.Minute)),
		denied(0, 30*time.Second, rate("mpm", 2, time.Minute)),
		{release: []int{1}, mode: ModeReserve, ops: []Op{rate("mpm", 2, time.Minute)}, allowed: true, binding: -1},
	}},
	{"rate usage reports units in the bucket", []step{
		ok(ModeReserve, rate("mph", 10, time.Hour)),
		ok(ModeReserve, rate("mph", 10, time.Hour)),
		{mode: ModeUsage, ops: []Op{rate("mph", 10, time.Hour)}, allowed: true, binding: -1, used: []int64{2},
			check: func(t *testing.T, r Result) {
				if r.Ops[0].Reset != 12*time.Minute || r.Ops[0].Next != 0 {
					t.Errorf("reset %s next %s, want 12m0s and 0s", r.Ops[0].Reset, r.Ops[0].Next)
				}
			}},
		{advance: 6 * time.Minute, mode: ModeUsage, ops: []Op{rate("mph", 10, time.Hour)}, allowed: true, binding: -1, used: []int64{1}},
	}},
	{"daily window frees when the oldest bucket leaves it", []step{
		ok(ModeReserve, window("mpd", 5, 3)),
		{advance: time.Hour, mode: ModeReserve, ops: []Op{window("mpd", 5, 2)}, allowed: true, binding: -1, used: []int64{3}},
		denied(0, 24*time.Hour+10*time.Minute-time.Hour, window("mpd", 5, 1)),
		{advance: 23 * time.Hour, mode: ModeReserve, ops: []Op{window("mpd", 5, 1)}, binding: 0, retry: 10 * time.Minute, used: []int64{5}},
		{advance: 10 * time.Minute, mode: ModeReserve, ops: []Op{window("mpd", 5, 3)}, allowed: true, binding: -1, used: []int64{2}},
		denied(0, time.Hour, window("mpd", 5, 1)),
	}},
	{"a message larger than the whole quota waits a full window", []step{
		denied(0, 24*time.Hour, window("bpd", 1000, 5000)),
		ok(ModeReserve, window("bpd", 1000, 999)),
	}},
	{"check mode writes nothing", []step{
		ok(ModeCheck, rate("mpm", 1, time.Minute), window("mpd", 1, 1)),
		ok(ModeCheck, rate("mpm", 1, time.Minute), window("mpd", 1, 1)),
		ok(ModeReserve, rate("mpm", 1, time.Minute), window("mpd", 1, 1)),
		{mode: ModeCheck, ops: []Op{rate("mpm", 1, time.Minute), window("mpd", 1, 1)}, binding: 1, retry: 24*time.Hour + 10*time.Minute},
	}},
	{"all or nothing: a refused window does not consume the rate", []step{
		ok(ModeReserve, rate("mpm", 10, time.Minute), window("mpd", 2, 1)),
		ok(ModeReserve, rate("mpm", 10, time.Minute), window("mpd", 2, 1)),
		denied(1, 24*time.Hour+10*time.Minute, rate("mpm", 10, time.Minute), window("mpd", 2, 1)),
		{mode: ModeUsage, ops: []Op{rate("mpm", 10, time.Minute), window("mpd", 2, 1)}, allowed: false, binding: 1, retry: 24*time.Hour + 10*time.Minute, used: []int64{2, 2}},
	}},
	{"binding limit is the one with the longest wait", []step{
		ok(ModeReserve, rate("mpm", 1, time.Minute), window("mpd", 1, 1)),
		denied(1, 24*time.Hour+10*time.Minute, rate("mpm", 1, time.Minute), window("mpd", 1, 1)),
		{advance: time.Minute, mode: ModeReserve, ops: []Op{window("mpd", 1, 1), rate("mpm", 1, time.Minute)}, binding: 0, retry: 24*time.Hour + 9*time.Minute},
	}},
	{"force applies over the limit (monitor mode counts)", []step{
		ok(ModeReserve, window("mpd", 1, 1)),
		{mode: ModeForce, ops: []Op{window("mpd", 1, 1)}, binding: 0, retry: 24*time.Hour + 10*time.Minute, used: []int64{1}},
		{mode: ModeUsage, ops: []Op{window("mpd", 1, 1)}, binding: 0, retry: 24*time.Hour + 10*time.Minute, used: []int64{2}},
	}},
	{"window release takes the reservation out of its bucket", []step{
		ok(ModeReserve, window("rpd", 3, 2)),
		{advance: 20 * time.Minute, mode: ModeReserve, ops: []Op{window("rpd", 3, 1)}, allowed: true, binding: -1},
		{release: []int{0}, mode: ModeUsage, ops: []Op{window("rpd", 3, 1)}, allowed: true, binding: -1, used: []int64{1}},
	}},
	{"the running daily total follows reservations, releases and buckets leaving the window", []step{
		ok(ModeReserve, window("rpd", 100, 4)),
		{advance: 3 * time.Hour, mode: ModeReserve, ops: []Op{window("rpd", 100, 5)}, allowed: true, binding: -1, used: []int64{4}},
		{advance: 3 * time.Hour, mode: ModeReserve, ops: []Op{window("rpd", 100, 6)}, allowed: true, binding: -1, used: []int64{9}},
		{release: []int{1}, mode: ModeReserve, ops: []Op{window("rpd", 100, 1)}, allowed: true, binding: -1, used: []int64{10}},
		{advance: 18*time.Hour + 10*time.Minute, mode: ModeReserve, ops: []Op{window("rpd", 100, 1)}, allowed: true, binding: -1, used: []int64{7}},
		{mode: ModeUsage, ops: []Op{window("rpd", 100, 1)}, allowed: true, binding: -1, used: []int64{8}},
		{advance: 6 * time.Hour, mode: ModeReserve, ops: []Op{window("rpd", 8, 1)}, allowed: true, binding: -1, used: []int64{1}},
		{advance: 25 * time.Hour, mode: ModeReserve, ops: []Op{window("rpd", 8, 8)}, allowed: true, binding: -1, used: []int64{0}},
		denied(0, 24*time.Hour+10*time.Minute, window("rpd", 8, 1)),
	}},
	{"per-recipient hour and day windows, exact", []step{
		ok(ModeReserve, rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 3, 24*time.Hour)),
		{advance: 10 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 3, 24*time.Hour)}, allowed: true, binding: -1},
		denied(0, 50*time.Minute, rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 3, 24*time.Hour)),
		ok(ModeReserve, rcpt("prh", "alice", 2, time.Hour), rcpt("prd", "alice", 3, 24*time.Hour)),
		{advance: 50 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 3, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{1, 2}},
		{advance: time.Hour, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 3, 24*time.Hour)}, binding: 1, retry: 22 * time.Hour, used: []int64{0, 3}},
	}},
	{"per-recipient: sends in one minute share a slot, counted until its latest send leaves", []step{
		ok(ModeReserve, rcpt("prh", "bob", 3, time.Hour)),
		{advance: 30 * time.Second, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 3, time.Hour)}, allowed: true, binding: -1, used: []int64{1}},
		{advance: time.Minute, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 3, time.Hour)}, allowed: true, binding: -1, used: []int64{2}},
		// The first two sends are one slot at 0:30: it frees at 1:00:30
		// (an exact window would free at 1:00:00), the count errs upwards.
		denied(0, 59*time.Minute, rcpt("prh", "bob", 3, time.Hour)),
		{advance: 59 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 3, time.Hour)}, allowed: true, binding: -1, used: []int64{1}},
	}},
	{"per-recipient: slots an hour old merge by ten minutes, the day count errs upwards by one slot", []step{
		ok(ModeReserve, rcpt("prd", "bob", 5, 24*time.Hour)),
		{advance: 4 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prd", "bob", 5, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{1}},
		{advance: 4 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prd", "bob", 5, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{2}},
		{advance: 4 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prd", "bob", 5, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{3}},
		// Two hours on, the sends at 0:00, 0:04 and 0:08 become one slot
		// at 0:08; the one at 0:12 is of the next ten minutes.
		{advance: 2 * time.Hour, mode: ModeReserve, ops: []Op{rcpt("prd", "bob", 5, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{4}},
		// At 24:05 an exact window counts 3 (0:08, 0:12, 2:12); the slot at
		// 0:08 still holds all three of the first ten minutes: 5, refused
		// until 24:08.
		{advance: 21*time.Hour + 53*time.Minute, mode: ModeReserve, ops: []Op{rcpt("prd", "bob", 5, 24*time.Hour)}, binding: 0, retry: 3 * time.Minute, used: []int64{5}},
		{advance: 3 * time.Minute, mode: ModeReserve, ops: []Op{rcpt("prd", "bob", 5, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{2}},
	}},
	{"per-recipient: a release takes its send out of a shared slot", []step{
		ok(ModeReserve, rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 9, 24*time.Hour)),
		{advance: 20 * time.Second, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 9, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{1, 1}},
		denied(0, time.Hour, rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 9, 24*time.Hour)),
		{release: []int{0}, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 2, time.Hour), rcpt("prd", "bob", 9, 24*time.Hour)}, allowed: true, binding: -1, used: []int64{1, 1}},
	}},
	{"per-recipient release", []step{
		ok(ModeReserve, rcpt("prh", "bob", 1, time.Hour)),
		denied(0, time.Hour, rcpt("prh", "bob", 1, time.Hour)),
		{release: []int{0}, mode: ModeReserve, ops: []Op{rcpt("prh", "bob", 1, time.Hour)}, allowed: true, binding: -1},
	}},
	{"spike: over factor x default baseline in the short window", []step{
		{mode: ModeReserve, ops: []Op{spike(50)}, allowed: true, binding: -1, check: func(t *testing.T, r Result) {
			// threshold = max(floor 10, 5 x 60/h x 10m/60m) = 50
			if o := r.Ops[0]; o.Flagged || o.Count != 50 || o.Threshold != 50 || o.Baseline != 60 {
				t.Errorf("got %+v, want 50 not flagged, threshold 50, baseline 60", o)
			}
		}},
		{advance: 9 * time.Minute, mode: ModeReserve, ops: []Op{spike(1)}, allowed: true, binding: -1, check: func(t *testing.T, r Result) {
			if o := r.Ops[0]; !o.Flagged || o.Count != 51 {
				t.Errorf("got %+v, want 51 flagged", o)
			}
		}},
		{advance: 2 * time.Minute, mode: ModeReserve, ops: []Op{spike(1)}, allowed: true, binding: -1, check: func(t *testing.T, r Result) {
			if o := r.Ops[0]; o.Flagged || o.Count != 2 {
				t.Errorf("got %+v, want the first minute out of the window: 2, not flagged", o)
			}
		}},
	}},
	{"spike: baseline learns per hour of the week", []step{
		ok(ModeReserve, spike(52)),
		// A week later, every hour in between was rolled with 0 messages:
		// slot(h0) = 0.5*60 + 0.5*52 = 56, the others 0.5*60 = 30.
		{advance: 7 * 24 * time.Hour, mode: ModeReserve, ops: []Op{spike(1)}, allowed: true, binding: -1, check: func(t *testing.T, r Result) {
			if o := r.Ops[0]; o.Baseline != 56 || math.Abs(o.Threshold-5*56*10.0/60) > 0.001 {
				t.Errorf("got %+v, want baseline 56", o)
			}
		}},
		{advance: 2 * time.Hour, mode: ModeUsage, ops: []Op{spike(0)}, allowed: true, binding: -1, check: func(t *testing.T, r Result) {
			if o := r.Ops[0]; o.Baseline != 30 || o.Count != 0 {
				t.Errorf("got %+v, want baseline 30 two hours later, count 0", o)
			}
		}},
	}},
}

// TestBackends runs every scenario against the memory backend and a real
// Redis, with the same fake clock, and checks both give the same, expected
// results.
func TestBackends(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			b := k.mk(t, clk)
			for si, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					clk.Set(t0.Add(time.Duration(si) * 1000 * time.Hour))
					cust := fmt.Sprintf("c%d", si)
					var done [][]Op
					for i, st := range sc.steps {
						clk.Advance(st.advance)
						for _, j := range st.release {
							if err := b.Release(context.Background(), cust, done[j]); err != nil {
								t.Fatalf("step %d: release: %v", i, err)
							}
						}
						r, err := b.Run(context.Background(), cust, st.mode, st.ops)
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if !r.Now.Equal(clk.Now()) {
							t.Errorf("step %d: store time %s, want %s", i, r.Now, clk.Now())
						}
						res := make([]Op, len(st.ops))
						for j, op := range st.ops {
							op.Bucket = r.Ops[j].Bucket
							res[j] = op
						}
						done = append(done, res)
						if r.Allowed != st.allowed || r.Binding != st.binding || r.Retry.Round(time.Second) != st.retry {
							t.Errorf("step %d: allowed=%v binding=%d retry=%s, want %v %d %s", i, r.Allowed, r.Binding, r.Retry, st.allowed, st.binding, st.retry)
						}
						for j, u := range st.used {
							if r.Ops[j].Used != u {
								t.Errorf("step %d op %d: used %d, want %d", i, j, r.Ops[j].Used, u)
							}
						}
						if st.check != nil {
							st.check(t, r)
						}
					}
				})
			}
		})
	}
}
