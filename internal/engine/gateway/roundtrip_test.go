package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
	"github.com/aupguard/aupguard/ratelimit"
)

// tripCounter counts the round trips a go-redis client makes: one per
// command sent alone, one per pipeline.
type tripCounter struct {
	trips atomic.Int64
	cmds  atomic.Int64
}

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestOneStoreRoundTripPerStage sends messages through the engine with
// every check of the default chain on a real Redis and counts the round
// trips of each stage: RCPT (opt-out lookup and recipient counters) and
// end of message (message counters, spike detector, bulk fingerprint and
// delivered count, and the end of the transaction) make exactly one each;
// the counters still count (quota usage), an opted-out recipient is still
// refused, and its recipient reservation is given back.
func TestOneStoreRoundTripPerStage(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	yaml := `
store: {backend: redis, redis: {addrs: ["` + r.Addr() + `"]}}
optout: {unsubscribe: {listen: "off"}}
defaults:
  limits: {messages_per_minute: 100000, messages_per_hour: 100000, messages_per_day: 100000,
           recipients_per_hour: 100000, recipients_per_day: 100000, per_recipient_per_hour: 1000,
           per_recipient_per_day: 1000}
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
`
	cfg, err := config.Parse([]byte(yaml), "rt.yaml", ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	h, err := store.Open(cfg.Store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tc := &tripCounter{}
	h.Client.AddHook(tc)
	secret := secrets.Key("0123456789abcdef")
	deps := &setup.Deps{Config: cfg, Store: h, Secret: secret}
	if err := openResolver(deps); err != nil {
		t.Fatal(err)
	}
	st, err := Build(deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc, err := optout.NewService(h, cfg, secret, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Add(ctx, "acme", "gone@example.org", optout.SourceCLI, ""); err != nil {
		t.Fatal(err)
	}
	e := NewEngine(st, nil, nil)
	body := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog, again and again and again.\r\n", 20))
	client := netip.MustParseAddr("192.0.2.7")
	trips := func(fn func()) int64 {
		before := tc.trips.Load()
		fn()
		return tc.trips.Load() - before
	}
	const msgs = 5
	for i := 0; i < msgs; i++ {
		t.Run(fmt.Sprintf("message %d", i), func(t *testing.T) {
			s := e.NewSession()
			s.Connect("client.test", client)
			s.Helo("client.test")
			if o := s.Mail(ctx, "news@acme.example", "", ""); o.Action.Decisive() {
				t.Fatalf("MAIL refused: %v", o.Reply)
			}
			for _, rc := range []string{fmt.Sprintf("a%d@example.org", i), "gone@example.org", fmt.Sprintf("b%d@example.org", i)} {
				var o Outcome
				if n := trips(func() { o = s.Rcpt(ctx, rc, "") }); n != 1 {
					t.Fatalf("RCPT %s: %d round trips, want 1", rc, n)
				}
				if want := rc == "gone@example.org"; (o.Action == policy.Reject) != want {
					t.Fatalf("RCPT %s: %v %v, refused want %v", rc, o.Action, o.Reply, want)
				}
			}
			s.Header("From", " News <news@acme.example>")
			s.Header("To", " <a@example.org>")
			s.Header("Subject", " Hello")
			s.Header("Date", " Mon, 23 Nov 2026 10:00:00 +0000")
			s.Header("Message-ID", fmt.Sprintf(" <%d@acme.example>", i))
			s.EndOfHeaders()
			s.Body(body)
			var o EOMOutcome
			if n := trips(func() { o = s.EndOfMessage(ctx, "Q1") }); n != 1 {
				t.Fatalf("end of message: %d round trips, want 1", n)
			}
			if o.Action != policy.Accept {
				t.Fatalf("EOM %v %v %s", o.Action, o.Reply, o.Verdict.Finding)
			}
			s.Close()
		})
	}
	// Every counter counted: 5 messages, 10 accepted recipients (the
	// opted-out one's reservation was given back at the next RCPT).
	q, err := ratelimit.Quota(ctx, h, cfg, "acme")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]int64{}
	for _, l := range q.Limits {
		if l.Used != nil {
			used[l.Name] = *l.Used
		}
	}
	if used["messages_per_day"] != msgs || used["recipients_per_day"] != 2*msgs {
		t.Fatalf("quota use %v, want %d messages and %d recipients", used, msgs, 2*msgs)
	}
	stat, err := svc.Status(ctx, "acme")
	if err != nil || stat.Delivered != 2*msgs || stat.OptedOutSends != msgs {
		t.Fatalf("opt-out status %+v, %v: want %d delivered, %d opted-out sends", stat, err, 2*msgs, msgs)
	}
}
