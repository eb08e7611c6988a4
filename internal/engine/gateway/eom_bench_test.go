package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

// BenchmarkEndOfMessage measures end of message alone (the timer and the
// allocation counters run only around EndOfMessage) with the production-
// like setup of the load harness (../shared/bench/aupguard.sh) on the
// memory store: every check, a provider with an authserv-id, an
// unsubscribe link added, bulk fingerprints, DKIM/DMARC verification and
// Ed25519 signing. DNS answers are cached after the first message, so the
// figures are the gateway's own work at EOM.
func BenchmarkEndOfMessage(b *testing.B) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "ed.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	dns := fakedns.Start(b, `
acme.example. TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.acme.example. TXT "v=DMARC1; p=reject"
`)
	yaml := `
dns: {servers: ["` + dns.Addr() + `"], timeout: 1s}
provider:
  hostnames: ["*.mx.provider.example"]
  networks: [192.0.2.0/24]
  authserv_id: mx.provider.example
  egress_ips: [192.0.2.10]
  postmaster: postmaster@provider.example
optout: {unsubscribe: {listen: "off", base_url: "https://unsubscribe.provider.example/u/"}}
bulk: {fingerprint_recipients: 1000000}
defaults:
  limits: {messages_per_minute: 100000000, messages_per_hour: 100000000, messages_per_day: 100000000,
           recipients_per_hour: 100000000, recipients_per_day: 100000000, bytes_per_day: 1000GB,
           per_recipient_per_hour: 1000, per_recipient_per_day: 1000,
           message_size: 25MB, recipients_per_message: 100, spike_floor: 100000000}
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
    unsubscribe: add
    dkim:
      - {domain: acme.example, selector: gw, key_file: "` + keyFile + `"}
`
	e := benchEngine(b, yaml)
	body := benchBody
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.7")
	added := 0
	send := func(b *testing.B, i int, timed bool) {
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
		s.Body([]byte(fmt.Sprintf("Message number %d for you.\r\n", i)))
		s.Body(body)
		if timed {
			b.StartTimer()
		}
		o := s.EndOfMessage(ctx, "Q1")
		if timed {
			b.StopTimer()
		}
		if o.Action != policy.Accept {
			b.Fatalf("EOM refused: %v %s %s", o.Reply, o.Verdict.Check, o.Verdict.Detail)
		}
		added = len(o.AddHeaders)
		s.Close()
	}
	send(b, -1, false) // fill the DNS cache
	before := dns.Total()
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		send(b, i, true)
	}
	if q := dns.Total() - before; q != 0 {
		b.Fatalf("%d DNS queries with a warm cache", q)
	}
	if added < 3 {
		b.Fatalf("%d headers added, want at least signature, results and unsubscribe", added)
	}
}
