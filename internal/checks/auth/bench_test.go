package auth

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkMessage runs a ~17 KB message through spf, dkim, dmarc and
// dkim_sign as the session does (MAIL, headers, body in 64 KiB chunks,
// EOM), with every DNS answer cached after the first message: unsigned,
// carrying the customer's signature to verify, and signed by the gateway.
func BenchmarkMessage(b *testing.B) {
	rk, ek, _ := testKeys(b)
	zone := checksZone + keyRecord(b, "cust", "reject.example", rk)
	r, srv := newResolver(b, zone)
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 300)
	plain := crlfMsg("From: Sender <a@reject.example>\nTo: rcpt@example.net\nSubject: bench\nDate: Mon, 23 Nov 2026 09:00:00 +0000\nMessage-ID: <b@x>\n\n") + body
	signed := customerSign(b, plain, "reject.example", "cust", rk)
	cases := []struct {
		name string
		msg  string
		gw   Keys
	}{
		{"unsigned", plain, Keys{}},
		{"customer-signed-verify", signed, Keys{}},
		{"gateway-signs-ed25519", plain, Keys{"acme": {{Domain: "reject.example", Selector: "gw", Signer: ek}}}},
		{"gateway-signs-rsa2048", plain, Keys{"acme": {{Domain: "reject.example", Selector: "gw", Signer: rk}}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			chain := steps(NewSPF(egress, r, time.Second), NewDKIM(r, 5, time.Second), NewDMARC(r, time.Second, nil, false),
				NewSigner(c.gw, SignOptions{Headers: []string{"From", "To", "Subject", "Date", "Message-ID"}}, nil))
			env := envelope{mailFrom: "a@reject.example", chunk: 65536}
			run(b, chain, env, c.msg) // fill the cache
			before := srv.Total()
			b.SetBytes(int64(len(c.msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run(b, chain, env, c.msg)
			}
			b.StopTimer()
			if q := srv.Total() - before; q != 0 {
				b.Fatalf("%d DNS queries with a warm cache", q)
			}
		})
	}
	st := r.Stats()
	b.Logf("DNS cache: %d hits, %d misses, hit rate %.3f", st.Hits, st.Misses, st.HitRate())
}
