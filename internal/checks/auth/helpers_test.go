package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/aupguard/aupguard/headers"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/mailaddr"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
)

var testNow = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// Keys are generated once per test binary: RSA generation is slow.
var (
	keyOnce  sync.Once
	rsaKey   *rsa.PrivateKey
	edKey    ed25519.PrivateKey
	otherRSA *rsa.PrivateKey
)

func testKeys(t testing.TB) (*rsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return rsaKey, edKey, otherRSA
}

// zoneTXT renders a TXT record's text as quoted strings of at most 200
// characters (a DNS character-string holds 255).
func zoneTXT(s string) string {
	var parts []string
	for len(s) > 200 {
		parts = append(parts, `"`+s[:200]+`"`)
		s = s[200:]
	}
	parts = append(parts, `"`+s+`"`)
	return strings.Join(parts, " ")
}

// keyRecord returns the zone line publishing signer's public key.
func keyRecord(t testing.TB, selector, domain string, signer crypto.Signer) string {
	t.Helper()
	rec, err := Key{Domain: domain, Selector: selector, Signer: signer}.DNSRecord()
	if err != nil {
		t.Fatal(err)
	}
	return selector + "._domainkey." + domain + ". TXT " + zoneTXT(rec) + "\n"
}

// newResolver starts a fake DNS server with zone and returns a caching
// resolver pointed at it.
func newResolver(t testing.TB, zone string) (*resolver.Cache, *fakedns.Server) {
	t.Helper()
	srv := fakedns.Start(t, zone)
	r, err := resolver.New(config.DNSConfig{Servers: []string{srv.Addr()}, Timeout: 500 * time.Millisecond}, clock.NewFake(testNow))
	if err != nil {
		t.Fatal(err)
	}
	return r, srv
}

// customerSign signs raw (CRLF) with go-msgauth's signer, as a customer's
// own MTA would, and returns the signed message.
func customerSign(t testing.TB, raw, domain, selector string, signer crypto.Signer) string {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// crlfMsg turns a test message written with LF into CRLF.
func crlfMsg(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// envelope of a test message.
type envelope struct {
	customer *policy.Customer
	mailFrom string
	helo     string
	chunk    int // body chunk size; 0 = 7 bytes, to split lines and CRLFs
}

var testCustomer = &policy.Customer{ID: "acme"}

// outcome of a message run through a chain.
type outcome struct {
	mail, eom policy.Verdict
	txn       *policy.Txn
	// signed is the message as it leaves: added headers on top.
	signed string
}

// run drives chain as the gateway session does: MAIL, one RCPT, headers,
// body in chunks through the body writers (closed at the end), EOM, Finish.
func run(t testing.TB, chain *policy.Chain, env envelope, raw string) outcome {
	t.Helper()
	ctx := context.Background()
	if env.customer == nil {
		env.customer = testCustomer
	}
	conn := &policy.Conn{ClientAddr: netip.MustParseAddr("198.51.100.7"), Helo: env.helo}
	txn := policy.NewTxn(conn, env.customer, "ref1", testNow)
	from, err := mailaddr.Parse(env.mailFrom)
	if err != nil {
		t.Fatalf("mail from %q: %v", env.mailFrom, err)
	}
	txn.MailFrom = from
	out := outcome{txn: txn}
	out.mail = chain.Mail(ctx, txn)
	if out.mail.Action.Decisive() {
		chain.Finish(ctx, txn, false)
		return out
	}
	rc, _ := mailaddr.Parse("rcpt@example.net")
	txn.Rcpts = append(txn.Rcpts, &policy.Rcpt{Addr: rc})
	data := []byte(raw)
	hdrs, off := headers.SplitHeader(data)
	txn.Headers = hdrs
	body := data[off:]
	ws := chain.BodyWriters(txn)
	n := env.chunk
	if n == 0 {
		n = 7
	}
	for len(body) > 0 {
		c := body
		if len(c) > n {
			c = c[:n]
		}
		body = body[len(c):]
		// The session passes its buffer; a writer must not keep it.
		buf := append([]byte(nil), c...)
		for _, w := range ws {
			if _, err := w.Write(buf); err != nil {
				t.Fatalf("body write: %v", err)
			}
		}
		for i := range buf {
			buf[i] = 'X'
		}
	}
	for _, w := range ws {
		if c, ok := w.(io.Closer); ok {
			_ = c.Close()
		}
	}
	out.eom = chain.EOM(ctx, txn)
	accepted := !out.eom.Action.Decisive()
	chain.Finish(ctx, txn, accepted)
	var b strings.Builder
	for _, h := range txn.AddedHeaders() {
		b.WriteString(h.Name + ":" + h.Value + "\r\n")
	}
	b.Write(data)
	out.signed = b.String()
	return out
}

// steps builds an all-enabled chain.
func steps(checks ...policy.Check) *policy.Chain {
	var s []policy.Step
	for _, c := range checks {
		s = append(s, policy.Step{Check: c, Enabled: true, OnError: policy.Defer})
	}
	return policy.NewChain(s)
}

// findings lists "check/finding" of a verdict's results.
func findings(vs ...policy.Verdict) []string {
	var out []string
	for _, v := range vs {
		for _, r := range v.Results {
			out = append(out, r.Check+"/"+r.Finding.Name)
		}
	}
	return out
}

// splitForTest splits a raw message as the MTA passes it to the milter.
func splitForTest(msg string) ([]policy.Header, int) {
	return headers.SplitHeader([]byte(msg))
}
