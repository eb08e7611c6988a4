package reputation

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

const dnsblYAML = `
provider:
  egress_ips: [192.0.2.10, 192.0.2.11, 192.0.2.12, 192.0.2.13]
reputation:
  deliveries:
    egress: 192.0.2.10
    transports: {postfix-ip2/smtp: 192.0.2.11}
  dnsbl:
    zones:
      - zone: zen.spamhaus.org
      - zone: bl.example
        listed: [127.0.0.2]
    report_window: 24h
    top: 2
    history: 10
`

// The zone of the fake DNSBLs, by address (reversed octets).
const (
	listed10  = "10.2.0.192.zen.spamhaus.org. 60 A 127.0.0.2\n10.2.0.192.zen.spamhaus.org. 60 A 127.0.0.4\n"
	timeout11 = "11.2.0.192.zen.spamhaus.org. TIMEOUT\n11.2.0.192.bl.example. TIMEOUT\n"
	// Spamhaus's error code for queries through a public resolver: not a listing.
	errcode12 = "12.2.0.192.zen.spamhaus.org. 60 A 127.255.255.254\n"
	// An answer the zone does not document (a resolver rewriting NXDOMAIN).
	odd13 = "13.2.0.192.bl.example. 60 A 198.51.100.7\n"
)

type mails struct {
	mu    sync.Mutex
	subj  []string
	body  []string
	fail  int
	calls int
}

func (m *mails) notify(_ context.Context, subject, body string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail > 0 {
		m.fail--
		return errors.New("relay down")
	}
	m.subj = append(m.subj, subject)
	m.body = append(m.body, body)
	return nil
}

func TestDNSBLWatcher(t *testing.T) {
	clk := clock.NewFake(t0)
	srv := fakedns.Start(t, listed10+timeout11+errcode12+odd13)
	res, err := resolver.New(config.DNSConfig{Servers: []string{srv.Addr()}, Timeout: 300 * time.Millisecond, MaxTTL: time.Second, NegativeTTL: time.Second, CacheSize: 100}, clk)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	for _, b := range backends()[:2] {
		t.Run(b.name, func(t *testing.T) {
			logs.Reset()
			h := b.open(t, clk)
			svc := newTestService(t, h, testConfig(t, dnsblYAML), clk, log)
			w := NewWatcher(svc, res)
			m := &mails{fail: 1}
			w.Notify = m.notify
			w.Complaints = func(_ context.Context, id string) (int64, int64, float64, error) {
				if id == "beta" {
					return 3, 1000, 0.003, nil
				}
				return 0, 0, 0, nil
			}
			ctx := context.Background()
			// Deliveries before the listing: beta most through .10, acme
			// some, gamma only through .11 (its own transport).
			rd := NewReader(svc)
			for _, c := range []string{"acme", "beta", "gamma"} {
				_, _ = svc.Backend.Remember(ctx, "Q"+c+"X", Message{Customer: c}, time.Hour)
			}
			line := func(prog, qid, rcpt, dsn, status string) string {
				return "Nov 29 10:00:00 mta1 " + prog + "[7]: " + qid + ": to=<" + rcpt + ">, relay=mx[192.0.2.99]:25, delay=1, delays=0/0/0/1, dsn=" + dsn + ", status=" + status + " (x)"
			}
			for i := 0; i < 6; i++ {
				rd.Line(ctx, line("postfix/smtp", "QbetaX", "b"+string(rune('a'+i))+"@x.example", "2.0.0", "sent"))
			}
			rd.Line(ctx, line("postfix/smtp", "QbetaX", "bz@x.example", "5.1.1", "bounced"))
			for i := 0; i < 3; i++ {
				rd.Line(ctx, line("postfix/smtp", "QacmeX", "a"+string(rune('a'+i))+"@x.example", "2.0.0", "sent"))
			}
			for i := 0; i < 9; i++ {
				rd.Line(ctx, line("postfix-ip2/smtp", "QgammaX", "g"+string(rune('a'+i))+"@x.example", "2.0.0", "sent"))
			}
			clk.Advance(time.Minute)

			state := func(addr, zone string) Listing {
				ls, err := svc.Backend.Listings(ctx, []ListingKey{{Address: addr, Zone: zone}})
				if err != nil {
					t.Fatal(err)
				}
				return ls[0]
			}
			w.Round(ctx)
			t.Run("listed: state, log, metric, mail retried after a failure", func(t *testing.T) {
				l := state("192.0.2.10", "zen.spamhaus.org")
				if !l.Listed || strings.Join(l.Codes, ",") != "127.0.0.2,127.0.0.4" {
					t.Fatalf("state %+v", l)
				}
				if l.Notified || m.calls != 1 || len(m.subj) != 0 {
					t.Fatalf("after a failed mail: notified %v, calls %d", l.Notified, m.calls)
				}
				if !strings.Contains(logs.String(), `"event":"dnsbl_listed"`) || !strings.Contains(logs.String(), `"event":"dnsbl_mail_failed"`) {
					t.Errorf("log:\n%s", logs.String())
				}
				clk.Advance(2 * time.Second)
				w.Round(ctx)
				w.Round(ctx)
				if len(m.subj) != 1 || !state("192.0.2.10", "zen.spamhaus.org").Notified {
					t.Fatalf("mails %q", m.subj)
				}
				if w.Stats.listings[ListingKey{Address: "192.0.2.10", Zone: "zen.spamhaus.org"}] != 1 {
					t.Errorf("listing counted %v", w.Stats.listings)
				}
			})
			t.Run("the mail names the top senders through the address with their rates", func(t *testing.T) {
				if !strings.Contains(m.subj[0], "192.0.2.10 listed on zen.spamhaus.org (127.0.0.2,127.0.0.4)") {
					t.Errorf("subject %q", m.subj[0])
				}
				body := m.body[0]
				beta := strings.Index(body, "  beta ")
				acme := strings.Index(body, "  acme ")
				if beta < 0 || acme < 0 || beta > acme || strings.Contains(body, "gamma") {
					t.Fatalf("senders (beta before acme, gamma not through .10):\n%s", body)
				}
				for _, want := range []string{"70.0%", "14.29%", "0.300%"} {
					if !strings.Contains(body, want) {
						t.Errorf("body lacks %s (beta's share, bounce rate, complaint rate):\n%s", want, body)
					}
				}
			})
			t.Run("timeouts keep the state and are logged", func(t *testing.T) {
				l := state("192.0.2.11", "zen.spamhaus.org")
				if l.Known || l.Listed || !strings.Contains(l.Error, "timeout") {
					t.Errorf("state %+v", l)
				}
				if !strings.Contains(logs.String(), `"event":"dnsbl_query_failed"`) {
					t.Error("no dnsbl_query_failed log line")
				}
			})
			t.Run("error codes and undocumented answers are not listings", func(t *testing.T) {
				if l := state("192.0.2.12", "zen.spamhaus.org"); l.Listed || !strings.Contains(l.Error, "127.255.255.254") {
					t.Errorf("error code: %+v", l)
				}
				if l := state("192.0.2.13", "bl.example"); l.Listed || !strings.Contains(l.Error, "198.51.100.7") {
					t.Errorf("undocumented answer: %+v", l)
				}
				if l := state("192.0.2.12", "bl.example"); !l.Known || l.Listed || l.Error != "" {
					t.Errorf("NXDOMAIN: %+v", l)
				}
			})
			t.Run("delisted, then listed again: history and a new mail", func(t *testing.T) {
				if err := srv.Set(timeout11 + errcode12 + odd13); err != nil {
					t.Fatal(err)
				}
				clk.Advance(2 * time.Second)
				w.Round(ctx)
				l := state("192.0.2.10", "zen.spamhaus.org")
				if l.Listed || len(l.History) != 2 || !strings.Contains(logs.String(), `"event":"dnsbl_delisted"`) {
					t.Fatalf("after delisting %+v", l)
				}
				if err := srv.Set(listed10 + timeout11 + errcode12 + odd13); err != nil {
					t.Fatal(err)
				}
				clk.Advance(2 * time.Second)
				w.Round(ctx)
				if l := state("192.0.2.10", "zen.spamhaus.org"); !l.Listed || len(l.History) != 3 || !l.Notified {
					t.Fatalf("listed again %+v", l)
				}
				if len(m.subj) != 2 {
					t.Errorf("mails %d, want 2 (one per listing)", len(m.subj))
				}
			})
			t.Run("a second watcher on the same store sends no second mail", func(t *testing.T) {
				w2 := NewWatcher(svc, res)
				m2 := &mails{}
				w2.Notify = m2.notify
				w2.Round(ctx)
				if m2.calls != 0 {
					t.Errorf("second watcher mailed %q", m2.subj)
				}
			})
		})
	}
}

func TestReverseName(t *testing.T) {
	cases := map[string]string{
		"192.0.2.10":        "10.2.0.192.zen.example",
		"::ffff:192.0.2.10": "10.2.0.192.zen.example",
		"2001:db8::1":       "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example",
	}
	for in, want := range cases {
		if got, err := reverseName(netip.MustParseAddr(in), "zen.example"); err != nil || got != want {
			t.Errorf("reverseName(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := reverseName(netip.Addr{}, "z"); err == nil {
		t.Error("no address accepted")
	}
}
