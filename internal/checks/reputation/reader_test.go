package reputation

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// TestReaderStdin: source "-" reads journalctl -o cat lines from standard
// input until it ends; foreign and malformed lines are skipped.
func TestReaderStdin(t *testing.T) {
	clk := clock.NewFake(t0)
	h := backends()[0].open(t, clk)
	svc := newTestService(t, h, testConfig(t, "reputation:\n  deliveries: {source: \"-\", egress: 192.0.2.10}\n"), clk, nil)
	ctx := context.Background()
	_, _ = svc.Backend.Remember(ctx, "ABCDEF123", Message{Customer: "acme"}, time.Hour)
	in := strings.Join([]string{
		"ABCDEF123: to=<a@example.org>, relay=mx[192.0.2.25]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
		"ABCDEF123: to=<b@example.org>, relay=mx[192.0.2.25]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (550 5.1.1 unknown)",
		"ABCDEF123: removed",
		"connect from unknown[192.0.2.7]",
		"\x00\xff garbage",
		"FEDCBA987: to=<c@example.org>, relay=none, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (x)",
		"ABCDEF123: to=<d@nx.example>, relay=none, delay=1, delays=0/0/0/1, dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nx.example type=MX: Host not found)",
	}, "\n")
	rd := NewReader(svc)
	if err := rd.Run(ctx, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	st, err := svc.Standing(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 1 || st.Hard != 2 || rd.Stats.Lines.Load() != 7 || rd.Stats.Results.Load() != 4 || rd.Stats.Unmatched.Load() != 1 {
		t.Errorf("standing %+v, lines %d, results %d, unmatched %d", st.Counts, rd.Stats.Lines.Load(), rd.Stats.Results.Load(), rd.Stats.Unmatched.Load())
	}
	// Standard input ended: nothing more can come, and /readyz must say so.
	if sn := rd.Snapshot(); sn.State != StateEnded || sn.LastLine == nil || sn.Degraded(time.Hour) == "" {
		t.Errorf("status after the end of stdin %+v", sn)
	}
	tot, _ := svc.Backend.Totals(ctx, []string{"acme"}, t0.Add(-time.Hour), t0.Add(1e9))
	if tot["acme"].Egress["192.0.2.10"] != 2 {
		t.Errorf("egress %+v (relay=none left through no address)", tot["acme"].Egress)
	}
}

// TestReaderCountsRealLogs follows a real Postfix log of each address
// format (testdata, TestRealPostfixLog) with the matching setting, plus
// delivery lines other programs logged: every result of the message is
// counted once, with its class, and only Postfix's own lines count.
func TestReaderCountsRealLogs(t *testing.T) {
	for _, format := range []AddressFormat{External, Internal} {
		t.Run(string(format), func(t *testing.T) {
			data, err := os.ReadFile("testdata/maillog-" + string(format) + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			// The message's queue id, as qmgr logged it.
			_, after, _ := strings.Cut(string(data), "postfix/qmgr[")
			_, after, _ = strings.Cut(after, "]: ")
			qid, _, _ := strings.Cut(after, ": from=<>")
			foreign := strings.Join([]string{
				// Another program on a shared syslog, its own tag.
				"Dec  8 00:03:33 mta1 php-fpm[77]: " + qid + ": to=<a1@example.org>, relay=mx[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
				// Another Postfix instance than the configured one.
				"Dec  8 00:03:33 mta1 postfix-other/smtp[78]: " + qid + ": to=<a2@example.org>, relay=mx[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
				// Postfix's smtpd is no delivery agent.
				"Dec  8 00:03:33 mta1 postfix/smtpd[79]: " + qid + ": to=<a3@example.org>, relay=mx[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
				// No syslog header in a file written by syslog.
				qid + ": to=<a4@example.org>, relay=mx[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
			}, "\n") + "\n"
			p := filepath.Join(t.TempDir(), "maillog")
			if err := os.WriteFile(p, append(data, foreign...), 0o644); err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(t0)
			h := backends()[0].open(t, clk)
			svc := newTestService(t, h, testConfig(t, fmt.Sprintf("reputation:\n  deliveries: {source: %q, from_start: true, address_format: %s, egress: 192.0.2.10}\n", p, format)), clk, nil)
			ctx := context.Background()
			if _, err := svc.Backend.Remember(ctx, qid, Message{Customer: "acme"}, time.Hour); err != nil {
				t.Fatal(err)
			}
			rd := NewReader(svc)
			sc := newStepClock()
			rd.Clock = sc
			done := make(chan error, 1)
			rctx, cancel := context.WithCancel(ctx)
			go func() { done <- rd.Run(rctx, nil) }()
			select {
			case <-sc.asks: // one round: the whole file read
			case <-time.After(10 * time.Second):
				t.Fatal("the reader did not come to rest")
			}
			cancel()
			close(sc.done)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			st, err := svc.Standing(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			want := Counts{Hard: 6, Policy: 1, Sent: 2, Deferred: 1}
			if st.Counts != want || rd.Stats.Foreign.Load() != 4 {
				t.Errorf("counts %+v, want %+v; foreign %d", st.Counts, want, rd.Stats.Foreign.Load())
			}
			if sn := rd.Snapshot(); sn.State != StateFollowing || sn.LastLine == nil || *sn.LagBytes != 0 {
				t.Errorf("status %+v", sn)
			}
		})
	}
}
