package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// openRedis opens a backend through the store handle, as the gateway does
// (Redis TIME, scripts preloaded).
func openRedis(t testing.TB, h *store.Handle) Backend {
	t.Helper()
	b, err := Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedisCluster runs the checks on a real 3-master Redis Cluster: every
// script touches several keys of one customer, which is only allowed
// because they share the customer's hash tag; customers spread over the
// masters. Time is Redis TIME.
func TestRedisCluster(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: rc.Addrs(), Cluster: true, KeyPrefix: "t:"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b := openRedis(t, h)
	hr := newHarness(t, b, clock.NewFake(time.Now()), `
defaults: {limits: {messages_per_minute: 3, messages_per_day: 100, recipients_per_day: 100, bytes_per_day: 10MB, per_recipient_per_hour: 2, per_recipient_per_day: 5}}
customers:
  - {id: c1, networks: [192.0.2.1], domains: [c1.example]}
  - {id: c2, networks: [192.0.2.2], domains: [c2.example]}
  - {id: c3, networks: [192.0.2.3], domains: [c3.example]}
  - {id: c4, networks: [192.0.2.4], domains: [c4.example]}
  - {id: c5, networks: [192.0.2.5], domains: [c5.example]}
  - {id: c6, networks: [192.0.2.6], domains: [c6.example]}
`)
	for _, c := range []string{"c1", "c2", "c3", "c4", "c5", "c6"} {
		for i := 0; i < 3; i++ {
			o := hr.send(t, c, "SIZE=1000", 1000, fmt.Sprintf("r%d@x.example", i), "same@x.example")
			if !o.delivered() {
				t.Fatalf("%s message %d: mail=%+v rcpts=%+v eom=%+v", c, i, o.mail, o.rcpts, o.eom)
			}
			// per_recipient_per_hour 2: the third to the same address is refused.
			if want := map[bool]string{false: "", true: FindingRcptFrequency}[i == 2]; o.rcpts[1].Finding != want {
				t.Fatalf("%s message %d: same@ got %q, want %q", c, i, o.rcpts[1].Finding, want)
			}
		}
		o := hr.send(t, c, "", 1000, "z@x.example")
		if o.mail.Finding != FindingRate || !strings.Contains(o.mail.Reply.Text(), "retry in ") {
			t.Fatalf("%s: 4th message per minute: %+v", c, o.mail)
		}
		// Redis TIME: the wait is about 20s (3 per minute).
		if at := o.mail.Results[0].Finding.Attrs["retry_after"]; at != "20" && at != "19" {
			t.Errorf("%s: retry_after %s, want about 20s", c, at)
		}
	}
	// The customers' keys are spread over more than one master.
	masters := map[string]bool{}
	for _, c := range []string{"c1", "c2", "c3", "c4", "c5", "c6"} {
		slot, err := rc.Client().ClusterKeySlot(context.Background(), h.CustomerKey(c, "rl", "messages_per_day")).Result()
		if err != nil {
			t.Fatal(err)
		}
		masters[strconv.FormatInt(slot*3/16384, 10)] = true
	}
	if len(masters) < 2 {
		t.Errorf("all customers in one third of the slots: %v", masters)
	}
	rep, err := Quota(context.Background(), h, parseConfig(t, "defaults: {limits: {messages_per_day: 100}}\ncustomers: [{id: c1, networks: [192.0.2.1], domains: [c1.example]}]"), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if u := rep.Limits[2]; u.Name != "messages_per_day" || *u.Used != 3 {
		t.Errorf("quota on the cluster: %+v", u)
	}
}

// TestConcurrentInstances races many goroutines of two gateway instances
// (two store handles, as two MTAs' gateways) on one customer: no more than
// the limit goes through, and what was refused is given back.
func TestConcurrentInstances(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	const y = `
defaults: {limits: {messages_per_day: 100, recipients_per_day: 150, messages_per_hour: 200}}
customers:
  - {id: acme, networks: [192.0.2.1], domains: [acme.example]}
`
	var hs []*harness
	var handles []*store.Handle
	for i := 0; i < 2; i++ {
		h := redisHandle(t, r.Addr(), nil)
		handles = append(handles, h)
		hs = append(hs, newHarness(t, openRedis(t, h), clock.NewFake(time.Now()), y))
	}
	var delivered, refused atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hr := hs[g%2]
			for i := 0; i < 8; i++ {
				o := hr.sendConcurrent(t, "acme", fmt.Sprintf("g%d-%d", g, i), "a@x.example")
				if o.delivered() {
					delivered.Add(1)
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if delivered.Load() != 100 || refused.Load() != 220 {
		t.Fatalf("delivered %d refused %d, want exactly 100 and 220", delivered.Load(), refused.Load())
	}
	rep, err := Quota(context.Background(), handles[0], parseConfig(t, y), "acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Limits {
		if (l.Name == "messages_per_day" || l.Name == "recipients_per_day" || l.Name == "messages_per_hour") && *l.Used != 100 {
			t.Errorf("%s: used %d, want 100 (refused messages give their reservations back)", l.Name, *l.Used)
		}
	}
}

// sendConcurrent is send with a caller-chosen reference, safe for
// concurrent use (send numbers references itself).
func (h *harness) sendConcurrent(t testing.TB, cust, ref string, rcpts ...string) outcome {
	return h.run(t, policy.NewTxn(&policy.Conn{}, h.cust[cust], ref, time.Now()), 500, rcpts)
}

// TestRedisOutage stops Redis in the middle of a run: every message gets
// the check's error (on_error, defer by default) wrapped as
// store.ErrUnavailable, nothing panics, and within a second of Redis
// coming back service is normal.
func TestRedisOutage(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AppendOnly: true})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 300 * time.Millisecond,
		Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:", DialTimeout: 200 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	b := openRedis(t, h)
	hr := newHarness(t, b, clock.NewFake(time.Now()), `
defaults: {limits: {messages_per_minute: 1000, recipients_per_day: 1000, per_recipient_per_day: 100}}`+baseConfig)
	if o := hr.send(t, "acme", "", 500, "a@x.example"); !o.delivered() {
		t.Fatalf("before the outage: %+v", o)
	}
	r.Stop()
	for i := 0; i < 3; i++ {
		o := hr.send(t, "acme", "", 500, "a@x.example")
		// The MAIL FROM look may pass on the use Redis reported under a
		// second ago (lookCache); the first stage that needs Redis defers.
		v := o.mail
		if v.Action == policy.Accept && len(o.rcpts) > 0 {
			v = o.rcpts[0]
		}
		if o.delivered() || v.Action != policy.Defer || v.Finding != policy.FindingError || v.Reply.Code() != 451 {
			t.Fatalf("during the outage, message %d: %+v", i, o)
		}
	}
	_, err = b.Run(context.Background(), "acme", ModeCheck, []Op{countedLimits[0].op(10, 1)})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("backend error %v, want store.ErrUnavailable", err)
	}
	r.Start()
	back := time.Now()
	for {
		o := hr.send(t, "acme", "", 500, "a@x.example")
		if o.delivered() {
			break
		}
		if time.Since(back) > time.Second {
			t.Fatalf("not back to normal a second after Redis restarted: %+v", o.mail)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("service resumed %s after Redis restarted", time.Since(back).Round(time.Millisecond))
}

// BenchmarkRedisPerMessage measures the counter work of one message with
// two recipients and every limit on (MAIL look, two RCPT reservations, EOM
// reservation with spike detection) on a real Redis, and reports the
// round trips (script calls) and Redis commands per message from
// INFO commandstats.
func BenchmarkRedisPerMessage(b *testing.B) {
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	h := redisHandle(b, r.Addr(), nil)
	be := openRedis(b, h)
	hr := newHarness(b, be, clock.NewFake(time.Now()), `
defaults: {limits: {messages_per_minute: 100000000, messages_per_hour: 100000000, messages_per_day: 100000000, recipients_per_hour: 100000000, recipients_per_day: 100000000, bytes_per_day: 1TB, per_recipient_per_hour: 100000000, per_recipient_per_day: 100000000, spike_floor: 100000000}}`+baseConfig)
	cl := r.Client()
	ctx := context.Background()
	if err := cl.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if o := hr.send(b, "acme", "SIZE=2000", 2000, fmt.Sprintf("r%d@x.example", i%1000), "b@y.example"); !o.delivered() {
			b.Fatalf("refused: %+v", o)
		}
	}
	b.StopTimer()
	scripts, _, others := testenv.ScriptStats(testenv.CommandStats(b, cl))
	b.ReportMetric(float64(scripts)/float64(b.N), "roundtrips/msg")
	b.ReportMetric(float64(others)/float64(b.N), "script-cmds/msg")
}

// TestRecipientStateCompact checks the per-recipient layout on a real
// Redis: every recipient of a customer is a field of a few shard hashes
// (no key per recipient), the fields survive any byte in the recipient's
// key, and a release takes the reservation out.
func TestRecipientStateCompact(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b := openRedis(t, h)
	ctx := context.Background()
	const n = 500
	var firsts []Op
	for i := 0; i < n; i++ {
		who := fmt.Sprintf("who-%d-|x", i)
		ops := []Op{rcpt("prh", who, 2, time.Hour), rcpt("prd", who, 3, 24*time.Hour)}
		res, err := b.Run(ctx, "acme", ModeReserve, ops)
		if err != nil || !res.Allowed {
			t.Fatalf("recipient %d: %+v %v", i, res, err)
		}
		if i == 0 {
			firsts = reserved(ops, res)
		}
	}
	keys, err := r.Client().Keys(ctx, "t:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 || len(keys) > recipientShards {
		t.Fatalf("%d keys for %d recipients, want at most %d shard hashes: %v", len(keys), n, recipientShards, keys[:min(len(keys), 5)])
	}
	var fields int64
	for _, k := range keys {
		c, err := r.Client().HLen(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		fields += c
	}
	if fields != n {
		t.Fatalf("%d fields, want one per recipient (%d)", fields, n)
	}
	// A second send to the first recipient, its release, then two more: the
	// hourly limit of 2 counts the first send and the two new ones' first.
	who := "who-0-|x"
	ops := []Op{rcpt("prh", who, 2, time.Hour), rcpt("prd", who, 3, 24*time.Hour)}
	res, err := b.Run(ctx, "acme", ModeReserve, ops)
	if err != nil || !res.Allowed || res.Ops[0].Used != 1 {
		t.Fatalf("second send: %+v %v", res, err)
	}
	if err := b.Release(ctx, "acme", reserved(ops, res)); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "acme", firsts); err != nil {
		t.Fatal(err)
	}
	res, err = b.Run(ctx, "acme", ModeReserve, ops)
	if err != nil || !res.Allowed || res.Ops[0].Used != 0 {
		t.Fatalf("after both releases: %+v %v, want 0 used", res, err)
	}
}
