package events

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

func eventsConfig() config.EventsConfig {
	return config.EventsConfig{Retention: 48 * time.Hour, AcceptedRetention: 24 * time.Hour, AggregateRetention: 400 * 24 * time.Hour, Buffer: 1024, DailyCap: 100000, Ring: 1000, File: "off"}
}

func memoryHandle(t testing.TB, clk clock.Clock, path string) *store.Handle {
	t.Helper()
	h, err := store.Open(config.StoreConfig{Backend: "memory", Path: path, Timeout: time.Second}, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func redisHandle(t testing.TB, addr string, clk clock.Clock) *store.Handle {
	t.Helper()
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: []string{addr}, KeyPrefix: "t:"}}, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// handles returns a fresh handle per backend kind. Redis stream ids are the
// server's clock, so the events are recorded at (nearly) real time.
func handles() []struct {
	name string
	mk   func(t *testing.T) *store.Handle
} {
	return []struct {
		name string
		mk   func(t *testing.T) *store.Handle
	}{
		{"memory", func(t *testing.T) *store.Handle { return memoryHandle(t, clock.System{}, "") }},
		{"redis", func(t *testing.T) *store.Handle {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			return redisHandle(t, r.Addr(), clock.System{})
		}},
	}
}

// mkDecision builds a gateway decision.
func mkDecision(at time.Time, stage, ref, cust string, action, effective policy.Action, check, finding string, rcpts int, results ...policy.Result) *gateway.Decision {
	d := &gateway.Decision{Time: at, Stage: stage, Ref: ref, Customer: cust, SenderDomain: "example.com", Rcpts: rcpts,
		Size: 1000, Action: action, Effective: effective, Check: check, Finding: finding, Mode: "enforce", Results: results}
	if action != effective {
		d.Mode = "monitor"
	}
	for i := 0; i < rcpts; i++ {
		d.RcptHashes = append(d.RcptHashes, "h"+ref+string(rune('a'+i)))
	}
	if action == policy.Reject {
		d.Code, d.Enhanced = 550, "5.7.1"
	}
	return d
}

func result(check, finding string, a policy.Action, attrs map[string]string) policy.Result {
	return policy.Result{Check: check, Finding: policy.Finding{Name: finding, Attrs: attrs}, Action: a}
}

// sequence is a known sequence of decisions over two hours.
func sequence(base time.Time) []*gateway.Decision {
	ds := sequenceOf(base)
	// Two of acme's messages came from login alice (one routine, kept in
	// the compact form on Redis), one from bob.
	ds[0].Login, ds[2].Login, ds[3].Login = "alice@acme.example", "alice@acme.example", "bob"
	return ds
}

func sequenceOf(base time.Time) []*gateway.Decision {
	spike := result("rate_limit", "volume_spike", policy.Defer, map[string]string{"limit": "volume_spike"})
	dm := result("dmarc", "dmarc_fail", policy.Reject, map[string]string{"domain": "Bank.Example"})
	opt := result("optout_suppression", "recipient_opted_out", policy.Reject, nil)
	return []*gateway.Decision{
		mkDecision(base.Add(1*time.Minute), gateway.StageEOM, "REF0000001", "acme", policy.Accept, policy.Accept, "", "", 2),
		mkDecision(base.Add(2*time.Minute), gateway.StageRcpt, "REF0000002", "acme", policy.Reject, policy.Reject, "optout_suppression", "recipient_opted_out", 1, opt),
		mkDecision(base.Add(3*time.Minute), gateway.StageEOM, "REF0000002", "acme", policy.Accept, policy.Accept, "", "", 3),
		mkDecision(base.Add(4*time.Minute), gateway.StageMail, "REF0000003", "acme", policy.Defer, policy.Defer, "rate_limit", "volume_spike", 0, spike),
		mkDecision(base.Add(61*time.Minute), gateway.StageEOM, "REF0000004", "beta", policy.Reject, policy.Accept, "dmarc", "dmarc_fail", 1, dm),
		mkDecision(base.Add(62*time.Minute), gateway.StageMail, "REF0000005", "", policy.Reject, policy.Reject, "identity", "unidentified_client", 0),
		mkDecision(base.Add(63*time.Minute), gateway.StageEOM, "REF0000006", "beta", policy.Quarantine, policy.Quarantine, "bulk_mail", "bulk_missing_one_click", 5),
	}
}

func record(t *testing.T, r *Recorder, ds []*gateway.Decision) {
	t.Helper()
	for _, d := range ds {
		r.Observe(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Dropped() != 0 || r.Failed() != 0 {
		t.Fatalf("dropped %d, failed %d", r.Dropped(), r.Failed())
	}
}

func refs(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Ref+"/"+e.Stage)
	}
	return out
}

func TestBackends(t *testing.T) {
	for _, k := range handles() {
		t.Run(k.name, func(t *testing.T) {
			h := k.mk(t)
			base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
			r, err := New(h, eventsConfig(), nil)
			if err != nil {
				t.Fatal(err)
			}
			record(t, r, sequence(base))
			ctx := context.Background()

			queries := []struct {
				name string
				q    Query
				want []string
			}{
				{"by ref", Query{Ref: "REF0000002"}, []string{"REF0000002/eom", "REF0000002/rcpt"}},
				{"by ref lower case", Query{Ref: "ref0000003"}, []string{"REF0000003/mail"}},
				{"unknown ref", Query{Ref: "NOSUCHREF0"}, nil},
				{"by customer", Query{Customer: "beta"}, []string{"REF0000006/eom", "REF0000004/eom"}},
				{"unidentified", Query{Customer: Unidentified}, []string{"REF0000005/mail"}},
				{"since", Query{Since: base.Add(62 * time.Minute)}, []string{"REF0000006/eom", "REF0000005/mail"}},
				{"until", Query{Until: base.Add(2 * time.Minute)}, []string{"REF0000001/eom"}},
				{"limit", Query{Limit: 2}, []string{"REF0000006/eom", "REF0000005/mail"}},
				{"by login", Query{Login: "alice@acme.example"}, []string{"REF0000002/eom", "REF0000001/eom"}},
				{"by customer and login", Query{Customer: "acme", Login: "bob"}, []string{"REF0000003/mail"}},
				{"unknown login", Query{Login: "alice"}, nil},
				{"customer and period", Query{Customer: "acme", Since: base.Add(2 * time.Minute), Until: base.Add(4 * time.Minute)}, []string{"REF0000002/eom", "REF0000002/rcpt"}},
			}
			for _, tt := range queries {
				t.Run(tt.name, func(t *testing.T) {
					evs, err := r.Events(ctx, tt.q)
					if err != nil {
						t.Fatal(err)
					}
					if got := refs(evs); !reflect.DeepEqual(got, tt.want) {
						t.Fatalf("got %v, want %v", got, tt.want)
					}
				})
			}

			t.Run("routine event content", func(t *testing.T) {
				// Kept in the compact routine form on Redis: what comes back
				// is the event as recorded.
				evs, err := r.Events(ctx, Query{Ref: "REF0000001"})
				if err != nil || len(evs) != 1 {
					t.Fatalf("%v %v", evs, err)
				}
				want := FromDecision(sequence(base)[0])
				if got := evs[0]; !reflect.DeepEqual(got, want) {
					t.Fatalf("got  %+v\nwant %+v", got, want)
				}
				if h.Backend == store.Redis {
					n, err := h.Client.XLen(ctx, h.Key("{ev:"+dayKey(base)+"}", "a")).Result()
					if err != nil || n != 2 {
						t.Fatalf("routine stream holds %d events (%v), want the 2 accepted messages", n, err)
					}
				}
			})

			t.Run("event content", func(t *testing.T) {
				evs, err := r.Events(ctx, Query{Ref: "REF0000004"})
				if err != nil || len(evs) != 1 {
					t.Fatalf("%v %v", evs, err)
				}
				e := evs[0]
				if e.Customer != "beta" || e.Action != "reject" || e.Effective != "accept" || e.Mode != "monitor" || e.Rcpts != 1 ||
					len(e.RcptHashes) != 1 || len(e.Findings) != 1 || e.Findings[0].Attrs["domain"] != "Bank.Example" || !e.Time.Equal(base.Add(61*time.Minute)) {
					t.Fatalf("event %+v", e)
				}
			})

			aggs := []struct {
				name string
				q    AggQuery
				want map[string]map[string]int64 // "customer@hour offset" -> counts
			}{
				{"hourly", AggQuery{Since: base, Until: base.Add(3 * time.Hour)}, map[string]map[string]int64{
					"acme@0": {"msg": 3, "rcpt": 5, "bytes": 2000, "a|accept": 2, "a|defer": 1,
						"d|rcpt|optout_suppression|recipient_opted_out|reject|reject": 1, "d|mail|rate_limit|volume_spike|defer|defer": 1,
						"r|optout_suppression|recipient_opted_out|reject": 1, "r|rate_limit|volume_spike|defer": 1},
					"-@1": {"msg": 1, "a|reject": 1, "d|mail|identity|unidentified_client|reject|reject": 1},
					"beta@1": {"msg": 2, "rcpt": 6, "bytes": 2000, "a|accept": 1, "w|reject": 1, "a|quarantine": 1,
						"d|eom|dmarc|dmarc_fail|reject|accept": 1, "d|eom|bulk_mail|bulk_missing_one_click|quarantine|quarantine": 1,
						"r|dmarc|dmarc_fail|reject": 1, "dm|bank.example|dmarc_fail": 1},
				}},
				{"one customer", AggQuery{Since: base, Until: base.Add(3 * time.Hour), Customer: "-"}, map[string]map[string]int64{
					"-@1": {"msg": 1, "a|reject": 1, "d|mail|identity|unidentified_client|reject|reject": 1},
				}},
				{"second hour only", AggQuery{Since: base.Add(90 * time.Minute), Until: base.Add(3 * time.Hour), Customer: "acme"}, map[string]map[string]int64{}},
			}
			for _, tt := range aggs {
				t.Run(tt.name, func(t *testing.T) {
					bs, err := r.Aggregates(ctx, tt.q)
					if err != nil {
						t.Fatal(err)
					}
					got := map[string]map[string]int64{}
					for _, b := range bs {
						got[b.Customer+"@"+formatInt(int64(b.Start.Sub(base)/time.Hour))] = b.Counts
						if b.Span != time.Hour {
							t.Fatalf("span %s", b.Span)
						}
					}
					if !reflect.DeepEqual(got, tt.want) {
						t.Fatalf("got  %v\nwant %v", got, tt.want)
					}
				})
			}

			t.Run("daily", func(t *testing.T) {
				bs, err := r.Aggregates(ctx, AggQuery{Since: base.Add(-48 * time.Hour), Until: base.Add(48 * time.Hour), Daily: true})
				if err != nil {
					t.Fatal(err)
				}
				msgs := map[string]int64{}
				for _, b := range bs {
					if b.Span != 24*time.Hour || b.Start != b.Start.Truncate(24*time.Hour) {
						t.Fatalf("bucket %+v", b)
					}
					msgs[b.Customer] += b.Counts["msg"]
				}
				if want := map[string]int64{"acme": 3, "beta": 2, "-": 1}; !reflect.DeepEqual(msgs, want) {
					t.Fatalf("daily messages %v, want %v", msgs, want)
				}
			})

			if h.Backend == store.Redis {
				t.Run("ttl", func(t *testing.T) {
					day := dayKey(base)
					for key, want := range map[string]time.Duration{
						h.Key("{ev:"+day+"}", "s"):                  48 * time.Hour,
						h.Key("{ev:"+day+"}", "r"):                  48 * time.Hour,
						h.Key("{ev:"+day+"}", "a"):                  24 * time.Hour,
						h.Key("{ev:"+day+"}", "ar"):                 24 * time.Hour,
						h.Key("{ev:"+day+"}", "c"):                  400 * 24 * time.Hour,
						h.CustomerKey("acme", "evh", hourKey(base)): 400 * 24 * time.Hour,
						h.CustomerKey("acme", "evd", day):           400 * 24 * time.Hour,
					} {
						ttl, err := h.Client.TTL(ctx, key).Result()
						if err != nil || ttl <= want-time.Minute || ttl > want {
							t.Errorf("TTL %s = %v (%v), want %v", key, ttl, err, want)
						}
					}
				})
			}
		})
	}
}

func TestMemoryRetentionAndRing(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	h := memoryHandle(t, clk, "")
	cfg := eventsConfig()
	cfg.Ring = 100
	r, err := New(h, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ds []*gateway.Decision
	for i := 0; i < 150; i++ {
		ds = append(ds, mkDecision(clk.Now().Add(time.Duration(i)*time.Second), gateway.StageEOM, "R"+formatInt(int64(i)), "acme", policy.Accept, policy.Accept, "", "", 1))
	}
	record(t, r, ds)
	evs, err := r.Events(context.Background(), Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 100 || evs[0].Ref != "R149" || evs[99].Ref != "R50" {
		t.Fatalf("ring kept %d events, newest %s", len(evs), refs(evs[:1]))
	}
	// The counters keep every event, the ring only the newest.
	bs, _ := r.Aggregates(context.Background(), AggQuery{Since: clk.Now(), Until: clk.Now().Add(time.Hour)})
	if len(bs) != 1 || bs[0].Counts["msg"] != 150 {
		t.Fatalf("aggregates %+v", bs)
	}
	// Past the retention the events are gone from queries; counters stay.
	clk.Advance(49 * time.Hour)
	evs, _ = r.Events(context.Background(), Query{})
	bs, _ = r.Aggregates(context.Background(), AggQuery{Since: clk.Now().Add(-50 * time.Hour), Until: clk.Now()})
	if len(evs) != 0 || len(bs) != 1 {
		t.Fatalf("after retention: %d events, %d buckets", len(evs), len(bs))
	}
}

func TestMemoryFile(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	cfg := eventsConfig()
	cfg.File = ""
	h, err := store.Open(config.StoreConfig{Backend: "memory", Path: dir}, clk)
	if err != nil {
		t.Fatal(err)
	}
	if FilePath(h, cfg) != path {
		t.Fatalf("file path %q", FilePath(h, cfg))
	}
	r, err := New(h, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	record(t, r, sequence(clk.Now().Add(-3*time.Hour)))
	if err := h.Close(); err != nil { // closes the recorder: flushes the file
		t.Fatal(err)
	}
	// A torn last line (crash mid-write) is skipped.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2026-03-02T11:00:00Z","stage":"eo`)
	f.Close()

	t.Run("reader", func(t *testing.T) {
		h2 := memoryHandle(t, clk, dir)
		rd, err := Open(h2, cfg)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := rd.Events(context.Background(), Query{Ref: "REF0000002"})
		if err != nil || len(evs) != 2 {
			t.Fatalf("%v %v", refs(evs), err)
		}
	})
	t.Run("restart", func(t *testing.T) {
		h2 := memoryHandle(t, clk, dir)
		r2, err := New(h2, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		record(t, r2, []*gateway.Decision{mkDecision(clk.Now(), gateway.StageEOM, "REF0000009", "acme", policy.Accept, policy.Accept, "", "", 1)})
		bs, err := r2.Aggregates(context.Background(), AggQuery{Since: clk.Now().Add(-24 * time.Hour), Until: clk.Now().Add(time.Hour), Customer: "acme", Daily: true})
		if err != nil || len(bs) != 1 || bs[0].Counts["msg"] != 4 {
			t.Fatalf("after restart: %+v %v", bs, err)
		}
	})
	t.Run("compaction", func(t *testing.T) {
		clk2 := clock.NewFake(clk.Now().Add(cfg.AggregateRetention + 24*time.Hour))
		h3 := memoryHandle(t, clk2, dir)
		r3, err := New(h3, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		r3.Close()
		b, err := os.ReadFile(path)
		if err != nil || len(strings.TrimSpace(string(b))) != 0 {
			t.Fatalf("expired events not compacted away: %q %v", b, err)
		}
	})
	t.Run("no file", func(t *testing.T) {
		h4 := memoryHandle(t, clk, "")
		if _, err := Open(h4, eventsConfig()); err != ErrNoRecord {
			t.Fatalf("err = %v, want ErrNoRecord", err)
		}
	})
}

// blockingBackend never finishes a write until released.
type blockingBackend struct {
	memory
	release chan struct{}
}

func (b *blockingBackend) write(ctx context.Context, evs []Event) error {
	<-b.release
	return nil
}

func TestFullBufferDropsAndCounts(t *testing.T) {
	bb := &blockingBackend{memory: *newMemory(clock.System{}, 100, time.Hour, time.Hour), release: make(chan struct{})}
	r := newRecorder(bb, 16, slog.New(slog.DiscardHandler))
	d := mkDecision(time.Now(), gateway.StageEOM, "REF0000001", "acme", policy.Accept, policy.Accept, "", "", 1)
	done := make(chan struct{})
	go func() {
		// The writer holds one batch; 16 wait in the queue; the rest drop.
		for i := 0; i < 1000; i++ {
			r.Observe(d)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Observe blocked on a full queue")
	}
	if got := r.Dropped(); got < 1000-16-maxBatch || got > 1000-16 {
		t.Fatalf("dropped %d", got)
	}
	close(bb.release)
	r.Close()
	if r.Dropped()+r.Recorded() != 1000 {
		t.Fatalf("dropped %d + recorded %d != 1000", r.Dropped(), r.Recorded())
	}
	r.Observe(d) // after Close: ignored, no panic
}

func TestSharedRecorder(t *testing.T) {
	h := memoryHandle(t, clock.System{}, "")
	a, err := New(h, eventsConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(h, eventsConfig(), nil)
	if err != nil || a != b {
		t.Fatalf("two recorders on one handle: %p %p %v", a, b, err)
	}
}

// BenchmarkObserve is the cost the milter's goroutine pays per decision.
func BenchmarkObserve(b *testing.B) {
	for _, k := range []string{"memory", "redis"} {
		b.Run(k, func(b *testing.B) {
			var h *store.Handle
			if k == "memory" {
				h = memoryHandle(b, clock.System{}, "")
			} else {
				rs := testenv.StartRedis(b, testenv.RedisOptions{})
				h = redisHandle(b, rs.Addr(), clock.System{})
			}
			cfg := eventsConfig()
			cfg.Buffer = 1 << 16
			r, err := New(h, cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			ds := sequence(time.Now().Add(-time.Hour))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Observe(ds[i%len(ds)])
					i++
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(r.Dropped())/float64(b.N), "dropped/op")
		})
	}
}
