package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// benchConfig enables every registered check (the default chain) with
// limits high enough that the benchmark measures the work, not refusals.
const benchConfig = `
dns: {servers: ["DNS"], timeout: 1s}
optout: {unsubscribe: {listen: "off"}}
spike: {enabled: false}
defaults:
  limits: {messages_per_minute: 100000000, messages_per_hour: 100000000, messages_per_day: 100000000,
           recipients_per_hour: 100000000, recipients_per_day: 100000000, per_recipient_per_hour: 100000000,
           per_recipient_per_day: 100000000}
bulk: {fingerprint_recipients: -1}
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
`

// BenchmarkSessionDefaultChain runs one 4 KiB message with two recipients
// through the engine and every check of the default chain, memory store.
// SPF and DMARC are answered by an in-process DNS server (the caching
// resolver keeps the answers, as in production).
func BenchmarkSessionDefaultChain(b *testing.B) {
	dns := fakedns.Start(b, "acme.example. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n_dmarc.acme.example. TXT \"v=DMARC1; p=none\"\n")
	yaml := strings.Replace(benchConfig, "DNS", dns.Addr(), 1)
	e := benchEngine(b, yaml)
	body := benchBody
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.7")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := e.NewSession()
		s.Connect("client.test", client)
		s.Helo("client.test")
		if o := s.Mail(ctx, "news@acme.example", "SIZE=5000", ""); o.Action.Decisive() {
			b.Fatalf("MAIL refused: %v", o.Reply)
		}
		s.Rcpt(ctx, fmt.Sprintf("a%d@example.org", i), "")
		s.Rcpt(ctx, fmt.Sprintf("b%d@example.org", i), "")
		s.Header("From", " News <news@acme.example>")
		s.Header("To", " <a@example.org>")
		s.Header("Subject", " Hello")
		s.Header("Date", " Mon, 23 Nov 2026 10:00:00 +0000")
		s.Header("Message-ID", fmt.Sprintf(" <%d@acme.example>", i))
		s.EndOfHeaders()
		s.Body(body)
		if o := s.EndOfMessage(ctx, "Q1"); o.Action.Decisive() && o.Action.String() != "quarantine" {
			b.Fatalf("EOM refused: %v %v", o.Reply, o.Verdict.Finding)
		}
		s.Close()
	}
}

// benchBody is the 4 KiB body the benchmarks send.
var benchBody = []byte(strings.Repeat("The quick brown fox jumps over the lazy dog, again and again and again.\r\n", 56))

// benchEngine builds the engine a benchmark drives from its config: the
// store the config names (closed when the benchmark ends), the resolver
// of its dns section, every check of its chain.
func benchEngine(b *testing.B, yaml string) *Engine {
	b.Helper()
	cfg, err := config.Parse([]byte(yaml), "bench.yaml", ConfigOptions())
	if err != nil {
		b.Fatal(err)
	}
	h, err := store.Open(cfg.Store, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	deps := &setup.Deps{Config: cfg, Store: h, Secret: secrets.Key("0123456789abcdef")}
	if err := openResolver(deps); err != nil {
		b.Fatal(err)
	}
	st, err := Build(deps)
	if err != nil {
		b.Fatal(err)
	}
	return NewEngine(st, nil, nil)
}
