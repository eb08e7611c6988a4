package mailauth_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/aupguard/aupguard/gateway"
	"github.com/aupguard/aupguard/internal/fakedns"
)

// benchZone has everything the benchmark messages look up; after the first
// message every answer comes from the gateway's cache.
const benchZone = `
esp.test. TXT "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 -all"
acme.example. TXT "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 -all"
_dmarc.acme.example. TXT "v=DMARC1; p=reject"
c1._domainkey.acme.example. TXT @PUB(customer-rsa)@
c2._domainkey.acme.example. TXT @PUB(customer-ed25519)@
_dmarc.signed.example. TXT "v=DMARC1; p=reject"
gw1._domainkey.signed.example. TXT @PUB(gateway-rsa)@
_dmarc.ed.example. TXT "v=DMARC1; p=reject"
gw2._domainkey.ed.example. TXT @PUB(gateway-ed25519)@
`

// benchMessage is a 4 KiB message from news@FROMDOMAIN, signed by the
// customer with key (d=acme.example, selector sel) when key is not empty.
func benchMessage(b *testing.B, from, key, sel string) (hdrs [][2]string, body []byte) {
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: News <news@%s>\r\nTo: Bob <bob@example.org>\r\nSubject: Benchmark\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", from, from)
	m.WriteString(strings.Repeat("The quick brown fox jumps over the lazy dog, again and again and again.\r\n", 56))
	msg := m.Bytes()
	if key != "" {
		var out bytes.Buffer
		err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{Domain: "acme.example", Selector: sel, Signer: readKey(b, key),
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			b.Fatal(err)
		}
		msg = out.Bytes()
	}
	h, r, err := gateway.ReadHeaders(bytes.NewReader(msg))
	if err != nil {
		b.Fatal(err)
	}
	for _, x := range h {
		hdrs = append(hdrs, [2]string{x.Name, x.Value})
	}
	var rest bytes.Buffer
	_, _ = rest.ReadFrom(r)
	return hdrs, rest.Bytes()
}

// BenchmarkAuthChain runs one message through the engine and the four
// authentication checks (spf, dkim, dmarc, dkim_sign) with the real caching
// resolver, its cache warm: the cost of the checks themselves per message.
//   - unsigned: SPF for two egress addresses + DMARC lookup, no crypto;
//   - customer_rsa / customer_ed25519: plus verifying the customer's signature;
//   - gateway_rsa / gateway_ed25519: plus the gateway signing the message
//     (signing throughput, bytes/s over the whole message).
func BenchmarkAuthChain(b *testing.B) {
	srv := fakedns.Start(b, zone(b, writeTemp(b, benchZone)))
	st := openState(b, srv.Addr())
	e := gateway.NewEngine(st, nil, nil)
	cases := []struct {
		name, from, mailFrom, key, sel string
	}{
		{"unsigned", "acme.example", "bounce@acme.example", "", ""},
		{"customer_rsa", "acme.example", "bounce@esp.test", "customer-rsa", "c1"},
		{"customer_ed25519", "acme.example", "bounce@esp.test", "customer-ed25519", "c2"},
		{"gateway_rsa", "signed.example", "bounce@esp.test", "", ""},
		{"gateway_ed25519", "ed.example", "bounce@esp.test", "", ""},
	}
	ctx := context.Background()
	client := netip.MustParseAddr("192.0.2.7")
	for _, tc := range cases {
		hdrs, body := benchMessage(b, tc.from, tc.key, tc.sel)
		size := len(body)
		for _, h := range hdrs {
			size += len(h[0]) + len(h[1]) + 3
		}
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var warm int
			for i := 0; i < b.N; i++ {
				s := e.NewSession()
				s.Connect("client.test", client)
				s.Helo("client.test")
				if o := s.Mail(ctx, tc.mailFrom, "", ""); o.Action.Decisive() {
					b.Fatalf("MAIL refused: %v", o.Reply)
				}
				s.Rcpt(ctx, "bob@example.org", "")
				for _, h := range hdrs {
					s.Header(h[0], h[1])
				}
				s.EndOfHeaders()
				for off := 0; off < len(body); off += 1024 {
					s.Body(body[off:min(off+1024, len(body))])
				}
				o := s.EndOfMessage(ctx, "Q1")
				if o.Action.Decisive() {
					b.Fatalf("EOM refused: %v %v", o.Reply, o.Verdict.Finding)
				}
				if strings.HasPrefix(tc.name, "gateway") && len(o.AddHeaders) != 1 {
					b.Fatalf("no signature added: %v", o.AddHeaders)
				}
				s.Close()
				if i == 0 {
					warm = srv.Total()
				}
			}
			// Every message after the first is answered from the cache.
			if n := srv.Total(); n != warm {
				b.Errorf("%d DNS queries after the cache was warm", n-warm)
			}
		})
	}
}

func writeTemp(b *testing.B, s string) string {
	f := b.TempDir() + "/bench.dns"
	if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
		b.Fatal(err)
	}
	return f
}
