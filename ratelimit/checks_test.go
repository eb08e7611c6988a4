package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

var testSecret = secrets.Key("0123456789abcdef-ratelimit-test")

func parseConfig(t testing.TB, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(y), "test.yaml", config.Options{Customers: []config.CustomerSection{CustomerSection}})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// refuser is a later check that refuses what it is told to, to show that
// what it refuses is given back.
type refuser struct {
	rcpt string // refuse this recipient at RCPT
	eom  bool   // defer at end of message
}

func (refuser) Name() string { return "refuser" }
func (r refuser) Rcpt(_ context.Context, _ *policy.Txn, rc *policy.Rcpt) ([]policy.Finding, error) {
	if r.rcpt != "" && rc.Addr.String() == r.rcpt {
		return []policy.Finding{{Name: "no", Action: policy.Reject}}, nil
	}
	return nil, nil
}
func (r refuser) EOM(context.Context, *policy.Txn) ([]policy.Finding, error) {
	if r.eom {
		return []policy.Finding{{Name: "no", Action: policy.Defer}}, nil
	}
	return nil, nil
}

// harness drives a chain the way the gateway session does.
type harness struct {
	chain *policy.Chain
	clk   *clock.Fake
	cust  map[string]*policy.Customer
	n     int
}

// outcome is what the client saw at each stage.
type outcome struct {
	mail  policy.Verdict
	rcpts []policy.Verdict
	eom   *policy.Verdict
}

func (o outcome) delivered() bool {
	return o.eom != nil && (o.eom.Effective() == policy.Accept || o.eom.Effective() == policy.Quarantine)
}

func newHarness(t testing.TB, b Backend, clk *clock.Fake, y string, extra ...policy.Check) *harness {
	t.Helper()
	cfg := parseConfig(t, y)
	c, err := New(b, cfg, testSecret, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []policy.Step{{Check: c.Size(), Enabled: true, OnError: policy.Defer}, {Check: c.RcptCap(), Enabled: true, OnError: policy.Defer}, {Check: c.Rate(), Enabled: true, OnError: policy.Defer}}
	for _, x := range extra {
		steps = append(steps, policy.Step{Check: x, Enabled: true, OnError: policy.Defer})
	}
	h := &harness{clk: clk, cust: map[string]*policy.Customer{}}
	if s, ok := cfg.Checks[RateName]; ok {
		fs := map[string]policy.Action{}
		for f, a := range s.Findings {
			fs[f], _ = a.Get()
		}
		steps[2].Findings = fs
	}
	for _, cu := range cfg.Customers {
		m := policy.Enforce
		if cu.Mode == "monitor" {
			m = policy.Monitor
		}
		h.cust[cu.ID] = &policy.Customer{ID: cu.ID, Mode: m, Reseller: cu.Reseller, Settings: cu.Settings}
	}
	h.chain = policy.NewChain(steps)
	return h
}

func (h *harness) send(t testing.TB, cust, mailArgs string, size int64, rcpts ...string) outcome {
	t.Helper()
	h.n++
	tx := policy.NewTxn(&policy.Conn{}, h.cust[cust], fmt.Sprintf("ref%d", h.n), h.clk.Now())
	tx.MailFrom, _ = mailaddr.Parse("sender@" + cust + ".example")
	if mailArgs != "" {
		k, v, _ := strings.Cut(mailArgs, "=")
		tx.MailArgs = map[string]string{k: v}
	}
	return h.run(t, tx, size, rcpts)
}

// run takes tx through the chain: MAIL, each recipient, end of message
// (with a message of size bytes) and Finish. Safe for concurrent use.
func (h *harness) run(t testing.TB, tx *policy.Txn, size int64, rcpts []string) outcome {
	ctx := context.Background()
	var o outcome
	o.mail = h.chain.Mail(ctx, tx)
	if e := o.mail.Effective(); e == policy.Defer || e == policy.Reject {
		h.chain.Finish(ctx, tx, false)
		return o
	}
	for _, r := range rcpts {
		a, err := mailaddr.Parse(r)
		if err != nil {
			t.Error(err) // not Fatal: run may be on another goroutine
			return o
		}
		rc := &policy.Rcpt{Addr: a}
		v := h.chain.Rcpt(ctx, tx, rc)
		o.rcpts = append(o.rcpts, v)
		if e := v.Effective(); e != policy.Defer && e != policy.Reject {
			tx.Rcpts = append(tx.Rcpts, rc)
		}
	}
	if len(tx.Rcpts) == 0 {
		h.chain.Finish(ctx, tx, false)
		return o
	}
	tx.HeaderBytes, tx.BodySize = 100, size-100
	v := h.chain.EOM(ctx, tx)
	o.eom = &v
	h.chain.Finish(ctx, tx, v.Effective() == policy.Accept || v.Effective() == policy.Quarantine)
	return o
}

func replyOf(v policy.Verdict) string { return v.Reply.String() }

const baseConfig = `
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
`

func TestChecks(t *testing.T) {
	cases := []struct {
		name   string
		config string
		extra  []policy.Check
		run    func(t *testing.T, h *harness)
	}{
		{"declared SIZE over the limit is refused at MAIL with 552 5.3.4", `
defaults: {limits: {message_size: 1MB}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			o := h.send(t, "acme", "SIZE=2000000", 500, "a@x.example")
			if !strings.HasPrefix(replyOf(o.mail), "552 5.3.4 ") || o.mail.Finding != FindingTooLarge {
				t.Fatalf("mail: %+v", o.mail)
			}
			if o := h.send(t, "acme", "SIZE=900000", 500, "a@x.example"); !o.delivered() {
				t.Fatalf("a message under the limit was refused: %+v", o)
			}
		}},
		{"received size over the limit is refused at EOM (SIZE= understated)", `
defaults: {limits: {message_size: 1000}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			o := h.send(t, "acme", "SIZE=10", 5000, "a@x.example")
			if o.eom == nil || !strings.HasPrefix(replyOf(*o.eom), "552 5.3.4 ") {
				t.Fatalf("eom: %+v", o.eom)
			}
		}},
		{"recipients over the per-message cap get 452 4.5.3, the rest go", `
defaults: {limits: {recipients_per_message: 2}}` + baseConfig, []policy.Check{refuser{rcpt: "b@x.example"}}, func(t *testing.T, h *harness) {
			o := h.send(t, "acme", "", 500, "a@x.example", "b@x.example", "c@x.example", "d@x.example")
			want := []string{"", "550 5.7.1 Message refused by policy", "", "452 4.5.3 Too many recipients, send the rest in another message"}
			for i, w := range want {
				if got := replyOf(o.rcpts[i]); got != w {
					t.Errorf("rcpt %d: %q, want %q (a recipient refused by a later check does not count)", i, got, w)
				}
			}
			if !o.delivered() {
				t.Fatal("message not delivered")
			}
		}},
		{"messages per minute: the third is deferred at MAIL, naming the limit and when", `
defaults: {limits: {messages_per_minute: 2}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			for i := 0; i < 2; i++ {
				if o := h.send(t, "acme", "", 500, "a@x.example"); !o.delivered() {
					t.Fatalf("message %d refused: %+v", i, o)
				}
			}
			o := h.send(t, "acme", "", 500, "a@x.example")
			if got := replyOf(o.mail); got != "451 4.7.1 Rate limit reached (messages_per_minute), retry in 30s" || o.mail.Finding != FindingRate {
				t.Fatalf("mail: %q (%s)", got, o.mail.Finding)
			}
			h.clk.Advance(30 * time.Second)
			if o := h.send(t, "acme", "", 500, "a@x.example"); !o.delivered() {
				t.Fatalf("not delivered after the wait: %+v", o)
			}
		}},
		{"a message deferred by a later check at EOM consumes nothing", `
defaults: {limits: {messages_per_day: 1, recipients_per_day: 1, bytes_per_day: 1000}}` + baseConfig, []policy.Check{refuser{eom: true}}, func(t *testing.T, h *harness) {
			for i := 0; i < 3; i++ {
				o := h.send(t, "acme", "", 900, "a@x.example")
				if o.eom == nil || o.eom.Check != "refuser" {
					t.Fatalf("attempt %d: want the later check's deferral, got mail=%+v rcpts=%+v eom=%+v", i, o.mail, o.rcpts, o.eom)
				}
			}
		}},
		{"a recipient refused by a later check does not count, the accepted ones do", `
defaults: {limits: {recipients_per_day: 2}}` + baseConfig, []policy.Check{refuser{rcpt: "no@x.example"}}, func(t *testing.T, h *harness) {
			if o := h.send(t, "acme", "", 500, "no@x.example", "no@x.example", "a@x.example"); !o.delivered() {
				t.Fatalf("refused: %+v", o)
			}
			o := h.send(t, "acme", "", 500, "b@x.example", "c@x.example")
			if replyOf(o.rcpts[0]) != "" || !strings.HasPrefix(replyOf(o.rcpts[1]), "451 4.7.1 Daily quota reached (recipients_per_day), retry in 24h10m") {
				t.Fatalf("rcpts: %q %q", replyOf(o.rcpts[0]), replyOf(o.rcpts[1]))
			}
			if o.rcpts[1].Finding != FindingQuota {
				t.Fatalf("finding %s", o.rcpts[1].Finding)
			}
		}},
		{"mailbombing: per recipient per hour, +tag and case folded", `
defaults: {limits: {per_recipient_per_hour: 2}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			h.send(t, "acme", "", 500, "bob+1@x.example")
			h.send(t, "acme", "", 500, "BOB+2@x.example")
			o := h.send(t, "acme", "", 500, "bob@X.example", "alice@x.example")
			if got := replyOf(o.rcpts[0]); got != "450 4.7.1 Too many messages to this recipient (per_recipient_per_hour), retry in 1h" || o.rcpts[0].Finding != FindingRcptFrequency {
				t.Fatalf("rcpt 0: %q", got)
			}
			if replyOf(o.rcpts[1]) != "" || !o.delivered() {
				t.Fatalf("another recipient was refused: %+v", o)
			}
		}},
		{"mailbombing: quoted local part, domain case and trailing dot are one recipient", `
defaults: {limits: {per_recipient_per_hour: 2}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			h.send(t, "acme", "", 500, `"bob"@x.example`)
			h.send(t, "acme", "", 500, "Bob@X.EXAMPLE.")
			o := h.send(t, "acme", "", 500, `"b\ob"@x.example`)
			if got := replyOf(o.rcpts[0]); got != "450 4.7.1 Too many messages to this recipient (per_recipient_per_hour), retry in 1h" {
				t.Fatalf("third spelling of bob: %q", got)
			}
		}},
		{"mailbombing without sub-address folding", `
defaults: {limits: {per_recipient_per_hour: 1, fold_subaddress: false}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			h.send(t, "acme", "", 500, "bob+1@x.example")
			if o := h.send(t, "acme", "", 500, "bob+2@x.example"); !o.delivered() {
				t.Fatalf("a different sub-address was refused: %+v", o.rcpts)
			}
			if o := h.send(t, "acme", "", 500, "bob+2@x.example"); o.delivered() {
				t.Fatal("the same sub-address twice was not refused")
			}
		}},
		{"per-customer limits override the defaults, 0 lifts one", `
defaults: {limits: {messages_per_minute: 1, messages_per_hour: 1}}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
    limits: {messages_per_minute: 3, messages_per_hour: 0}
  - id: beta
    networks: [192.0.2.2]
    domains: [beta.example]
`, nil, func(t *testing.T, h *harness) {
			for i := 0; i < 3; i++ {
				if o := h.send(t, "acme", "", 500, "a@x.example"); !o.delivered() {
					t.Fatalf("acme message %d refused", i)
				}
			}
			if o := h.send(t, "acme", "", 500, "a@x.example"); o.delivered() {
				t.Fatal("acme's 4th message per minute went")
			}
			h.send(t, "beta", "", 500, "a@x.example")
			if o := h.send(t, "beta", "", 500, "a@x.example"); o.delivered() || o.mail.Finding != FindingRate {
				t.Fatalf("beta's 2nd message: %+v", o.mail)
			}
		}},
		{"monitor mode: would-be deferrals are logged and the mail counts", `
defaults: {limits: {messages_per_day: 1}}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
    mode: monitor
`, nil, func(t *testing.T, h *harness) {
			h.send(t, "acme", "", 500, "a@x.example")
			o := h.send(t, "acme", "", 500, "a@x.example")
			if !o.delivered() || o.eom.Action != policy.Defer || o.eom.Finding != FindingQuota || !o.eom.Monitor {
				t.Fatalf("eom: %+v", o.eom)
			}
			r, err := h.chain.Steps()[2].Check.(rateCheck).c.b.Run(context.Background(), "acme", ModeUsage, []Op{countedLimits[2].op(1, 1)})
			if err != nil || r.Ops[0].Used != 2 {
				t.Fatalf("used %+v %v, want 2", r.Ops, err)
			}
		}},
		{"spike: defer by default, names the finding", `
spike: {window: 10m}
defaults: {limits: {spike_floor: 5, spike_baseline: 6, spike_factor: 5}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			// threshold = max(5, 5 x 6/h x 10/60) = 5
			for i := 0; i < 5; i++ {
				if o := h.send(t, "acme", "", 500, "a@x.example"); !o.delivered() {
					t.Fatalf("message %d refused: %+v", i, o.eom)
				}
			}
			o := h.send(t, "acme", "", 500, "a@x.example")
			if o.eom == nil || o.eom.Finding != FindingSpike || replyOf(*o.eom) != "451 4.7.1 Unusual sending volume, deferred; try again later" {
				t.Fatalf("eom: %+v", o.eom)
			}
		}},
		{"spike: quarantine when configured", `
spike: {window: 10m}
checks: {rate_limit: {findings: {volume_spike: quarantine}}}
defaults: {limits: {spike_floor: 1, spike_baseline: 1, spike_factor: 2}}` + baseConfig, nil, func(t *testing.T, h *harness) {
			h.send(t, "acme", "", 500, "a@x.example")
			o := h.send(t, "acme", "", 500, "a@x.example")
			if o.eom == nil || o.eom.Effective() != policy.Quarantine || o.eom.Finding != FindingSpike {
				t.Fatalf("eom: %+v", o.eom)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			m, err := newMemory(clk, "")
			if err != nil {
				t.Fatal(err)
			}
			c.run(t, newHarness(t, m, clk, c.config, c.extra...))
		})
	}
}

// failing is a backend whose store is down.
type failing struct{}

func (failing) Run(context.Context, string, Mode, []Op) (Result, error) {
	return Result{}, fmt.Errorf("%w: connection refused", store.ErrUnavailable)
}
func (failing) Release(context.Context, string, []Op) error {
	return fmt.Errorf("%w: connection refused", store.ErrUnavailable)
}
func (f failing) queueRun(sb *store.Batch, customer string, mode Mode, ops []Op) *pendingRun {
	return &pendingRun{ops: ops, call: sb.Func(func(ctx context.Context) (any, error) { return f.Run(ctx, customer, mode, ops) })}
}
func (f failing) queueRelease(sb *store.Batch, customer string, ops []Op) []*store.Call {
	return []*store.Call{sb.Func(func(ctx context.Context) (any, error) { return nil, f.Release(ctx, customer, ops) })}
}
func (failing) newBatch() *store.Batch { return (*store.Handle)(nil).NewBatch() }

func TestStoreDownIsAnError(t *testing.T) {
	clk := clock.NewFake(t0)
	h := newHarness(t, failing{}, clk, `
defaults: {limits: {messages_per_minute: 5, recipients_per_day: 5, message_size: 1MB}}`+baseConfig)
	o := h.send(t, "acme", "", 500, "a@x.example")
	if o.mail.Action != policy.Defer || o.mail.Finding != policy.FindingError || o.mail.Check != RateName {
		t.Fatalf("mail: %+v", o.mail)
	}
	tx := policy.NewTxn(&policy.Conn{}, h.cust["acme"], "r", clk.Now())
	_, err := h.chain.Steps()[2].Check.(rateCheck).Mail(context.Background(), tx)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err %v, want store.ErrUnavailable", err)
	}
}

func TestFmtRetry(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{0, "1s"}, {1500 * time.Millisecond, "2s"}, {59 * time.Second, "59s"}, {time.Minute, "1m"}, {61 * time.Second, "2m"}, {time.Hour, "1h"}, {24*time.Hour + 10*time.Minute, "24h10m"}} {
		if got := fmtRetry(c.d); got != c.want {
			t.Errorf("fmtRetry(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}
