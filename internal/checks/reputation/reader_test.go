package reputation

import (
	"context"
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
	tot, _ := svc.Backend.Totals(ctx, []string{"acme"}, t0.Add(-time.Hour), t0.Add(1e9))
	if tot["acme"].Egress["192.0.2.10"] != 2 {
		t.Errorf("egress %+v (relay=none left through no address)", tot["acme"].Egress)
	}
}
