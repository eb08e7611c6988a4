package e2e

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// authConfig runs only the authentication checks. The gateway's resolver
// asks the in-process fake DNS (DNSADDR); provider.egress_ips is what
// receivers would see, not Postfix's loopback client address. Customer
// webhost has a gateway signing key (KEYFILE) for signed.example only.
const authConfig = `
log: {format: json}
chain: [spf, dkim, dmarc, dkim_sign]
dns: {servers: ["DNSADDR"], timeout: 1s}
provider:
  egress_ips: [192.0.2.10]
customers:
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [webhost.example, unaligned.example, signed.example]
    dkim:
      - {domain: signed.example, selector: gw, key_file: KEYFILE}
`

// gatewayKey writes a new RSA-2048 signing key for the gateway to a PKCS#8
// PEM file named name in a temporary directory.
func gatewayKey(t *testing.T, name string) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, file
}

// dkimTXT is the DKIM key record of pub (RFC 6376 §3.6.1), in zone-file
// strings of at most 255 octets (RFC 1035 §3.3.14).
func dkimTXT(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	var rec string
	switch p := pub.(type) {
	case ed25519.PublicKey:
		rec = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			t.Fatal(err)
		}
		rec = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	var parts []string
	for len(rec) > 255 {
		parts = append(parts, `"`+rec[:255]+`"`)
		rec = rec[255:]
	}
	return strings.Join(append(parts, `"`+rec+`"`), " ")
}

// verifyAt verifies a delivered message's DKIM signatures with go-msgauth,
// asking the fake server directly (not the gateway's resolver).
func verifyAt(t *testing.T, dnsAddr string, data []byte) []*dkim.Verification {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		r, _, err := (&dns.Client{Net: "tcp"}).Exchange(m, dnsAddr)
		if err != nil {
			return nil, err
		}
		if r.Rcode == dns.RcodeNameError {
			return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
		}
		var out []string
		for _, rr := range r.Answer {
			if txt, ok := rr.(*dns.TXT); ok {
				out = append(out, strings.Join(txt.Txt, ""))
			}
		}
		return out, nil
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

func authMsg(from, subject string) []byte {
	return []byte(fmt.Sprintf("From: News <%s>\r\nTo: Bob <bob@example.org>\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@auth.e2e>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\n\r\nthe  body   has odd   spacing and trailing blank lines.\r\n\r\n\r\n",
		from, subject, time.Now().UnixNano()))
}

// TestAuthThroughPostfix: mail from a DMARC p=reject domain without
// alignment is refused at end of data with 550 5.7.26 (RFC 7372) through
// real Postfix; the same message from a domain the gateway signs for is
// delivered with a DKIM-Signature that verifies at the sink; a signature
// the customer made itself survives Postfix and the gateway.
func TestAuthThroughPostfix(t *testing.T) {
	gwKey, keyFile := gatewayKey(t, "signed.example.pem")
	custPub, custKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	zone := strings.Join([]string{
		// Authorises some other address, not the provider's egress.
		`unaligned.example. TXT "v=spf1 ip4:198.51.100.1 -all"`,
		`_dmarc.unaligned.example. TXT "v=DMARC1; p=reject"`,
		// No SPF record at all: only the gateway's signature can align.
		`_dmarc.signed.example. TXT "v=DMARC1; p=reject"`,
		`gw._domainkey.signed.example. TXT ` + dkimTXT(t, gwKey.Public()),
		// The customer signs its own mail for webhost.example.
		`_dmarc.webhost.example. TXT "v=DMARC1; p=reject; adkim=s"`,
		`c1._domainkey.webhost.example. TXT ` + dkimTXT(t, custPub),
	}, "\n")
	fake := fakedns.Start(t, zone)
	cfg := strings.NewReplacer("DNSADDR", fake.Addr(), "KEYFILE", keyFile).Replace(authConfig)
	env := gwtest.Start(t, gwtest.Options{Config: cfg})

	t.Run("p=reject without alignment refused with 5.7.26", func(t *testing.T) {
		env.Sink.Reset()
		before := len(env.Decisions())
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "bounce@unaligned.example", To: []string{"bob@example.org"},
			Data: authMsg("news@unaligned.example", "unaligned")})
		if r.Delivered() || r.EndOfData == nil {
			t.Fatalf("not refused at end of data: %s", r)
		}
		if r.EndOfData.Code != 550 || r.EndOfData.EnhancedCode != "5.7.26" {
			t.Fatalf("want 550 5.7.26, got %s", r.EndOfData)
		}
		if !strings.Contains(r.EndOfData.Text, "unaligned.example") {
			t.Errorf("reply does not name the domain to fix: %s", r.EndOfData)
		}
		var found bool
		for _, d := range env.WaitDecisions(before+1, 5*time.Second)[before:] {
			if d["stage"] == "eom" && d["finding"] == "dmarc_reject" {
				found = true
			}
		}
		if !found {
			t.Errorf("no eom decision with finding dmarc_reject:\n%s", env.Log())
		}
		if _, err := env.Sink.WaitFor(1, 2*time.Second); err == nil {
			t.Errorf("refused message reached the sink")
		}
	})

	t.Run("provider signing makes the same message aligned", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "bounce@signed.example", To: []string{"bob@example.org"},
			Data: authMsg("news@signed.example", "signed by the gateway")})
		if !r.Delivered() {
			t.Fatalf("not delivered: %s\n%s", r, env.Log())
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		data := got[0].Data
		if bytes.Count(data, []byte("DKIM-Signature:")) != 1 {
			t.Fatalf("want one DKIM-Signature at the sink:\n%s", data)
		}
		vs := verifyAt(t, fake.Addr(), data)
		if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "signed.example" {
			for _, v := range vs {
				t.Logf("d=%s err=%v", v.Domain, v.Err)
			}
			t.Fatalf("the gateway's signature does not verify at the sink:\n%s", data)
		}
		for _, h := range []string{"From", "To", "Subject", "Date", "Message-ID"} {
			if !containsFold(vs[0].HeaderKeys, h) {
				t.Errorf("signature does not cover %s: h=%v", h, vs[0].HeaderKeys)
			}
		}
	})

	t.Run("customer's own signature verified and delivered intact", func(t *testing.T) {
		env.Sink.Reset()
		var signed bytes.Buffer
		err := dkim.Sign(&signed, bytes.NewReader(authMsg("news@webhost.example", "signed by the customer")), &dkim.SignOptions{
			Domain: "webhost.example", Selector: "c1", Signer: custKey,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			t.Fatal(err)
		}
		// Envelope sender of another domain: SPF cannot align, DKIM must.
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "bounce@unaligned.example", To: []string{"bob@example.org"}, Data: signed.Bytes()})
		if !r.Delivered() {
			t.Fatalf("customer-signed message refused: %s\n%s", r, env.Log())
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		vs := verifyAt(t, fake.Addr(), got[0].Data)
		if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "webhost.example" {
			t.Fatalf("customer signature broken on the way: %+v\n%s", vs, got[0].Data)
		}
	})

	t.Run("customer signature broken in transit is not an aligned pass", func(t *testing.T) {
		var signed bytes.Buffer
		err := dkim.Sign(&signed, bytes.NewReader(authMsg("news@webhost.example", "tampered")), &dkim.SignOptions{
			Domain: "webhost.example", Selector: "c1", Signer: custKey,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Replace(signed.Bytes(), []byte("Hello Bob"), []byte("Hello Eve"), 1)
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "bounce@unaligned.example", To: []string{"bob@example.org"}, Data: data})
		if r.EndOfData == nil || r.EndOfData.Code != 550 || r.EndOfData.EnhancedCode != "5.7.26" {
			t.Fatalf("want 550 5.7.26, got %s", r)
		}
	})
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// signedBulkConfig: the auth checks with the opt-out checks between them,
// as in the default chain. webhost has a gateway key; plain has none.
const signedBulkConfig = `
log: {format: json}
chain: [spf, dkim, dmarc, bulk_mail, feedback_stamp, unsubscribe_link, dkim_sign]
dns: {servers: ["DNSADDR"], timeout: 1s}
provider:
  egress_ips: [192.0.2.10]
optout:
  unsubscribe:
    base_url: https://unsub.provider.example/u/
customers:
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [webhost.example]
    unsubscribe: add
    dkim:
      - {domain: webhost.example, selector: gw, key_file: KEYFILE}
  - id: plain
    networks: [127.0.0.6/32]
    domains: [plain.example]
    unsubscribe: add
`

// TestSignedBulkThroughPostfix: the headers other checks add before the
// signer (List-Unsubscribe, List-Unsubscribe-Post, the feedback id) come
// out of Postfix covered by the gateway's signature, which verifies at the
// sink with go-msgauth and with dkimpy; bulk_mail counts the gateway's
// signature as DKIM alignment (auth.DKIMAligned) and refuses the bulk mail
// of a customer nothing signs for.
func TestSignedBulkThroughPostfix(t *testing.T) {
	gwKey, keyFile := gatewayKey(t, "webhost.pem")
	record := dkimTXT(t, gwKey.Public())
	fake := fakedns.Start(t, strings.Join([]string{
		`_dmarc.webhost.example. TXT "v=DMARC1; p=reject"`,
		`gw._domainkey.webhost.example. TXT ` + record,
		`_dmarc.plain.example. TXT "v=DMARC1; p=none"`,
	}, "\n"))
	cfg := strings.NewReplacer("DNSADDR", fake.Addr(), "KEYFILE", keyFile).Replace(signedBulkConfig)
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	bulk := func(from string) []byte {
		return []byte(fmt.Sprintf("From: News <%s>\r\nTo: alice@example.org\r\nSubject: weekly\r\n offers\r\nPrecedence: bulk\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@e2e>\r\n\r\nOur   weekly offers.  \r\n\r\n", from, time.Now().UnixNano()))
	}

	env.Sink.Reset()
	r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@webhost.example", To: []string{"alice@example.org"}, Data: bulk("news@webhost.example")})
	if !r.Delivered() {
		t.Fatalf("signed bulk mail not delivered: %s\n%s", r, env.Log())
	}
	got, err := env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	data := got[0].Data
	vs := verifyAt(t, fake.Addr(), data)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "webhost.example" {
		t.Fatalf("gateway signature does not verify at the sink: %+v\n%s", vs, data)
	}
	for _, h := range []string{"List-Unsubscribe", "List-Unsubscribe-Post", "From", "Subject"} {
		if !containsFold(vs[0].HeaderKeys, h) {
			t.Errorf("signature does not cover %s: h=%v", h, vs[0].HeaderKeys)
		}
	}
	verifyDkimpy(t, data, "gw._domainkey.webhost.example", strings.NewReplacer(`" "`, "", `"`, "").Replace(record))

	r = env.Send(testenv.SendOptions{LocalAddr: "127.0.0.6", From: "news@plain.example", To: []string{"alice@example.org"}, Data: bulk("news@plain.example")})
	if r.EndOfData == nil || r.EndOfData.Code != 550 || r.EndOfData.EnhancedCode != "5.7.1" {
		t.Fatalf("unsigned bulk mail: want 550 5.7.1 (bulk_not_dkim_aligned), got %s", r)
	}
}

// verifyDkimpy verifies data's DKIM signature with Debian's python3-dkim
// (dkimpy), an implementation independent of go-msgauth and of aupguard.
func verifyDkimpy(t *testing.T, data []byte, name, record string) {
	t.Helper()
	testenv.Need(t, "dkimverify") // package python3-dkim
	dir := t.TempDir()
	mf, rf := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "rec.txt")
	if err := os.WriteFile(mf, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rf, []byte(record), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, dkim
rec = open(sys.argv[2], 'rb').read()
def dns(name, timeout=5):
    return rec if name.rstrip(b'.') == sys.argv[3].encode() else None
ok = dkim.DKIM(open(sys.argv[1], 'rb').read()).verify(dnsfunc=dns)
print('pass' if ok else 'fail')
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, mf, rf, name).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pass" {
		t.Fatalf("dkimpy: %v %s\n%s", err, out, data)
	}
}
