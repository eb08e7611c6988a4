package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// BenchmarkSessionRedis runs one 4 KiB message to two distinct recipients
// through the engine and every check of the default chain on a real Redis
// (spike detection on), and reports what the store did per message from
// the server's own counters: script calls, commands run inside them, and
// the Lua time (commandstats usec; it counts wall time inside the server,
// so it is noisy on a shared machine; the call counts are not).
func BenchmarkSessionRedis(b *testing.B) {
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	dns := fakedns.Start(b, "acme.example. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n_dmarc.acme.example. TXT \"v=DMARC1; p=none\"\n")
	yaml := `
dns: {servers: ["` + dns.Addr() + `"], timeout: 1s}
store: {backend: redis, redis: {addrs: ["` + r.Addr() + `"]}, timeout: 5s}
optout: {unsubscribe: {listen: "off"}}
spike: {enabled: true}
defaults:
  limits: {messages_per_minute: 100000000, messages_per_hour: 100000000, messages_per_day: 100000000,
           recipients_per_hour: 100000000, recipients_per_day: 100000000, bytes_per_day: 1000GB,
           per_recipient_per_hour: 100000000, per_recipient_per_day: 100000000, spike_floor: 100000000}
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
`
	e := benchEngine(b, yaml)
	body := benchBody
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.7")
	send := func(i int) {
		s := e.NewSession()
		s.Connect("client.test", client)
		s.Helo("client.test")
		s.Mail(ctx, "news@acme.example", "SIZE=5000", "")
		s.Rcpt(ctx, fmt.Sprintf("a%d@example.org", i), "")
		s.Rcpt(ctx, fmt.Sprintf("b%d@example.org", i), "")
		s.Header("From", " News <news@acme.example>")
		s.Header("To", " <a@example.org>")
		s.Header("Subject", " Hello")
		s.Header("Date", " Mon, 23 Nov 2026 10:00:00 +0000")
		s.Header("Message-ID", fmt.Sprintf(" <%d@acme.example>", i))
		s.EndOfHeaders()
		// A body of its own: the same body to every recipient would be bulk.
		s.Body([]byte(fmt.Sprintf("Message number %d for you.\r\n", i)))
		s.Body(body)
		if o := s.EndOfMessage(ctx, "Q1"); o.Action != policy.Accept {
			b.Fatalf("message refused: %v %s %s", o.Reply, o.Verdict.Check, o.Verdict.Detail)
		}
		s.Close()
	}
	for i := 0; i < 50; i++ {
		send(-i - 1)
	}
	rc := r.Client()
	rc.ConfigResetStat(ctx)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send(i)
	}
	b.StopTimer()
	calls, usec, inner := testenv.ScriptStats(testenv.CommandStats(b, rc))
	b.ReportMetric(float64(calls)/float64(b.N), "scripts/msg")
	b.ReportMetric(float64(inner)/float64(b.N), "rediscmds/msg")
	b.ReportMetric(float64(usec)/float64(b.N), "lua-µs/msg")
}
