package notify

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/report"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

type fakeSender struct {
	mu   sync.Mutex
	msgs []report.Message
}

func (f *fakeSender) Send(_ context.Context, msgs []report.Message, _ time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msgs...)
	return len(msgs), nil
}

type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time                  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) add(d time.Duration)             { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (c *fixedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

var _ clock.Clock = (*fixedClock)(nil)

// The notices as the opt-out family declares them (setup.Host.Notice).
const (
	KindFlagged       = "optout_escalation"
	KindComplaintRate = "complaint_rate_high"
)

var kinds = map[string]string{
	KindFlagged:       "was flagged: it keeps sending to recipients who opted out",
	KindComplaintRate: "crossed the complaint-rate act threshold",
}

func decision(customer, finding string) *gateway.Decision {
	return &gateway.Decision{Customer: customer, Results: []policy.Result{{Check: "x", Finding: policy.Finding{Name: finding, Detail: "detail of " + finding}}}}
}

func TestNotifier(t *testing.T) {
	cfg, err := config.Parse([]byte(`
provider: {postmaster: postmaster@provider.example}
notifications: {interval: 1h, abuse_contact: true}
customers:
  - {id: acme, networks: [192.0.2.0/24], domains: [acme.example], abuse_contact: abuse@acme.example}
  - {id: beta, networks: [198.51.100.0/24], domains: [beta.example]}
`), "n.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			sc := config.StoreConfig{Backend: "memory"}
			if backend == "redis" {
				r := testenv.StartRedis(t, testenv.RedisOptions{})
				sc = config.StoreConfig{Backend: "redis", Timeout: 2 * time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "n:"}}
			}
			h, err := store.Open(sc, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			clk := &fixedClock{t: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
			f := &fakeSender{}
			n := New(func() *config.Config { return cfg }, f, h, clk, nil, kinds)
			// A second gateway sharing the store: with Redis, it does not mail again.
			f2 := &fakeSender{}
			n2 := New(func() *config.Config { return cfg }, f2, h, clk, nil, kinds)
			n.Observe(decision("acme", KindFlagged))
			n.Observe(decision("acme", KindFlagged))             // within the interval: nothing
			n.Observe(decision("acme", "from_domain_not_owned")) // not a notification
			n.Observe(decision("beta", KindComplaintRate))
			n.Observe(decision("", KindFlagged)) // unidentified: nothing
			n.Close()
			n2.Observe(decision("acme", KindFlagged))
			n2.Close()
			if len(f.msgs) != 3 {
				t.Fatalf("mails: %+v", f.msgs)
			}
			if f.msgs[0].To != "postmaster@provider.example" || f.msgs[1].To != "abuse@acme.example" ||
				!strings.Contains(f.msgs[0].Subject, "customer acme was flagged") || !strings.Contains(f.msgs[0].Text, "aupguard customer clear acme") {
				t.Fatalf("acme's mails: %+v", f.msgs[:2])
			}
			if f.msgs[2].To != "postmaster@provider.example" || !strings.Contains(f.msgs[2].Subject, "beta crossed the complaint-rate act threshold") {
				t.Fatalf("beta's mail: %+v", f.msgs[2])
			}
			want2 := 2 // memory: each gateway is alone
			if backend == "redis" {
				want2 = 0
			}
			if len(f2.msgs) != want2 {
				t.Fatalf("second gateway sent %d mails, want %d", len(f2.msgs), want2)
			}
			// After the interval, a new event mails again.
			clk.add(2 * time.Hour)
			f3 := &fakeSender{}
			n3 := New(func() *config.Config { return cfg }, f3, h, clk, nil, kinds)
			n3.Observe(decision("acme", KindFlagged))
			n3.Close()
			if backend == "memory" && len(f3.msgs) != 2 {
				t.Fatalf("after the interval: %d mails", len(f3.msgs))
			}
		})
	}
}

// TestComposeNotification: a notification is one plain-text part.
func TestComposeNotification(t *testing.T) {
	b, err := report.Compose("postmaster@provider.example", report.Message{To: "p@provider.example", Subject: "[aupguard] customer acme was flagged", Text: "Customer acme was flagged.\n"}, time.Now(), "gw.example")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "Customer acme was flagged.") || strings.Contains(s, "text/html") || !strings.Contains(s, "Auto-Submitted: auto-generated") {
		t.Fatalf("composed:\n%s", s)
	}
}

// TestNotifierResellerCopies: a notice about a reseller's customer also
// goes to each of the reseller's abuse contacts (the postmaster keeps
// its copy); a customer without a reseller, or whose reseller lists no
// contact, notifies as before.
func TestNotifierResellerCopies(t *testing.T) {
	cfg, err := config.Parse([]byte(`
provider: {postmaster: postmaster@provider.example}
notifications: {interval: 1h, abuse_contact: false}
resellers:
  - {id: hostco, abuse_contacts: [abuse@hostco.example, noc@hostco.example]}
  - {id: silent}
customers:
  - {id: acme, reseller: hostco, networks: [192.0.2.0/24], domains: [acme.example], abuse_contact: abuse@acme.example}
  - {id: beta, reseller: silent, networks: [198.51.100.0/24], domains: [beta.example]}
  - {id: own, networks: [203.0.113.0/24], domains: [own.example]}
`), "n.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		customer string
		want     []string
	}{
		{"acme", []string{"postmaster@provider.example", "abuse@hostco.example", "noc@hostco.example"}},
		{"beta", []string{"postmaster@provider.example"}},
		{"own", []string{"postmaster@provider.example"}},
	} {
		t.Run(tc.customer, func(t *testing.T) {
			f := &fakeSender{}
			n := New(func() *config.Config { return cfg }, f, nil, &fixedClock{t: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}, nil, kinds)
			n.Observe(decision(tc.customer, KindComplaintRate))
			n.Close()
			var to []string
			for _, m := range f.msgs {
				to = append(to, m.To)
			}
			if strings.Join(to, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("mailed %v, want %v", to, tc.want)
			}
			for _, m := range f.msgs[1:] {
				if !strings.Contains(m.Text, "Your customer acme crossed the complaint-rate act threshold") || !strings.Contains(m.Text, "Reseller: hostco") ||
					strings.Contains(m.Text, "aupguard customer clear") {
					t.Fatalf("reseller's copy:\n%s", m.Text)
				}
			}
		})
	}
}
