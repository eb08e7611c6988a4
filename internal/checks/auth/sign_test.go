package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// adder is a check that adds headers at end of message, as
// unsubscribe_link and feedback_stamp do before the signer.
type adder struct{ hdrs []policy.Header }

func (a adder) Name() string { return "adder" }
func (a adder) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	for _, h := range a.hdrs {
		t.AddHeader(h.Name, h.Value)
	}
	return nil, nil
}

var signMessages = map[string]string{
	"plain": `From: Alice <alice@example.com>
To: bob@example.net
Subject: hello
Date: Mon, 23 Nov 2026 09:00:00 +0000
Message-ID: <1@example.com>

Hello Bob.
`,
	"folded and spaced": "From:   \"Alice Example\"\r\n\t<alice@example.com>  \r\nTo: bob@example.net,\r\n  carol@example.net\r\nSUBJECT:\tfolded\r\n  subject\t with  tabs \r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\nMessage-ID: <2@example.com>\r\nX-Other: not signed\r\n\r\nline with trailing space   \r\n\t indented\tline\r\n\r\n\r\nafter empty lines\r\n\r\n\r\n\r\n",
	"empty body": `From: alice@example.com
To: bob@example.net
Subject: nothing

`,
	"no final CRLF": "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: x\r\n\r\nlast line without end",
	"subdomain from": `From: news@news.example.com
To: bob@example.net
Subject: letter

Body.
`,
	"bare CR in body": "From: alice@example.com\r\nSubject: cr\r\n\r\na\rb\r\nend\r\r\n",
}

var unsubscribe = []policy.Header{
	{Name: "List-Unsubscribe", Value: " <https://u.example.org/u/abc>,\r\n <mailto:u@example.org?subject=abc>"},
	{Name: "List-Unsubscribe-Post", Value: " List-Unsubscribe=One-Click"},
	{Name: "Feedback-ID", Value: " c1:acme:gw"},
}

func signerFor(t testing.TB, keys ...Key) *Signer {
	return NewSigner(Keys{"acme": keys}, SignOptions{Headers: DefaultSignedHeaders, Oversign: []string{"From"}}, clock.NewFake(testNow))
}

// verifyGo verifies a signed message with go-msgauth, keys from records.
func verifyGo(t testing.TB, msg string, records map[string]string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, errors.New("no record for " + name)
	}})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

func TestSignVerifiesWithGoMsgauth(t *testing.T) {
	rk, ek, _ := testKeys(t)
	for _, alg := range []struct {
		name   string
		signer crypto.Signer
	}{{"rsa-sha256", rk}, {"ed25519-sha256", ek}} {
		key := Key{Domain: "example.com", Selector: "gw1", Signer: alg.signer}
		rec, _ := key.DNSRecord()
		records := map[string]string{"gw1._domainkey.example.com": rec}
		for name, msg := range signMessages {
			if name == "bare CR in body" {
				// go-msgauth's relaxed body canonicalization drops a CR
				// before CRLF; RFC 6376 §3.4.4 makes only SP and HTAB
				// white space, as dkimpy does (TestSignVerifiesWithDkimpy
				// checks this case).
				continue
			}
			for _, chunk := range []int{1, 7, 65536} {
				t.Run(fmt.Sprintf("%s/%s/chunk%d", alg.name, name, chunk), func(t *testing.T) {
					chain := steps(adder{unsubscribe}, signerFor(t, key))
					out := run(t, chain, envelope{mailFrom: "alice@example.com", chunk: chunk}, crlfMsg(msg))
					if out.eom.Action != policy.Accept {
						t.Fatalf("verdict %+v", out.eom)
					}
					added := out.txn.AddedHeaders()
					last := added[len(added)-1]
					if last.Name != "DKIM-Signature" || !strings.Contains(last.Value, "a="+alg.name) || !strings.Contains(last.Value, "d=example.com") {
						t.Fatalf("added %v", added)
					}
					for _, l := range strings.Split(last.Value, "\r\n") {
						if len(l) > 78 {
							t.Fatalf("signature line of %d characters: %q", len(l), l)
						}
					}
					vs := verifyGo(t, out.signed, records)
					if len(vs) != 1 || vs[0].Err != nil {
						t.Fatalf("verification %+v\n%s", vs[0], out.signed)
					}
					keys := strings.ToLower(strings.Join(vs[0].HeaderKeys, ":"))
					for _, want := range []string{"from:from", "list-unsubscribe", "list-unsubscribe-post", "feedback-id"} {
						if !strings.Contains(keys, want) {
							t.Fatalf("h=%s lacks %s", keys, want)
						}
					}
					if strings.Contains(keys, "x-other") {
						t.Fatalf("h=%s signs an unlisted field", keys)
					}
					if s, ok := GatewaySigning(out.txn); !ok || s.Domain != "example.com" {
						t.Fatalf("GatewaySigning = %+v %v", s, ok)
					}
				})
			}
		}
	}
}

func TestSignatureBreaksOnTampering(t *testing.T) {
	rk, _, _ := testKeys(t)
	key := Key{Domain: "example.com", Selector: "gw1", Signer: rk}
	rec, _ := key.DNSRecord()
	records := map[string]string{"gw1._domainkey.example.com": rec}
	out := run(t, steps(signerFor(t, key)), envelope{mailFrom: "alice@example.com"}, crlfMsg(signMessages["plain"]))
	tests := []struct {
		name   string
		mangle func(string) string
	}{
		{"subject changed", func(s string) string { return strings.Replace(s, "Subject: hello", "Subject: HELLO", 1) }},
		{"body changed", func(s string) string { return strings.Replace(s, "Hello Bob.", "Hello Eve.", 1) }},
		{"second From added (oversigned)", func(s string) string {
			return strings.Replace(s, "To: bob", "From: mallory@example.org\r\nTo: bob", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := verifyGo(t, tt.mangle(out.signed), records)
			if len(vs) != 1 || vs[0].Err == nil {
				t.Fatalf("tampered message verifies")
			}
		})
	}
	// Unsigned fields and a changed folding do not matter (relaxed).
	vs := verifyGo(t, strings.Replace(out.signed, "Subject: hello", "Subject:\r\n   hello", 1)+"", records)
	if vs[0].Err != nil {
		t.Fatalf("refolded subject: %v", vs[0].Err)
	}
}

// TestSignVerifiesWithDkimpy verifies the gateway's signatures with an
// independent implementation, Debian's python3-dkim (dkimpy), its DNS
// lookup answered from the test's records.
func TestSignVerifiesWithDkimpy(t *testing.T) {
	testenv.Need(t, "dkimverify") // package python3-dkim
	rk, ek, _ := testKeys(t)
	script := `
import sys, dkim
rec = open(sys.argv[2], 'rb').read()
def dns(name, timeout=5):
    return rec if name.rstrip(b'.') == sys.argv[3].encode() else None
msg = open(sys.argv[1], 'rb').read()
d = dkim.DKIM(msg)
ok = d.verify(dnsfunc=dns)
print('pass' if ok else 'fail')
sys.exit(0 if ok else 1)
`
	dir := t.TempDir()
	for _, alg := range []struct {
		name   string
		signer crypto.Signer
	}{{"rsa", rk}, {"ed25519", ek}} {
		key := Key{Domain: "example.com", Selector: "gw1", Signer: alg.signer}
		rec, _ := key.DNSRecord()
		for name, msg := range signMessages {
			t.Run(alg.name+"/"+name, func(t *testing.T) {
				out := run(t, steps(adder{unsubscribe}, signerFor(t, key)), envelope{mailFrom: "alice@example.com"}, crlfMsg(msg))
				mf := filepath.Join(dir, "msg.eml")
				rf := filepath.Join(dir, "rec.txt")
				if err := os.WriteFile(mf, []byte(out.signed), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(rf, []byte(rec), 0o600); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command("/usr/bin/python3", "-c", script, mf, rf, "gw1._domainkey.example.com")
				b, err := cmd.CombinedOutput()
				if err != nil || strings.TrimSpace(string(b)) != "pass" {
					t.Fatalf("dkimpy: %v\n%s\n%s", err, b, out.signed)
				}
			})
		}
	}
}

func TestKeysFor(t *testing.T) {
	rk, ek, _ := testKeys(t)
	ks := Keys{"acme": {
		{Domain: "example.com", Selector: "a", Signer: rk},
		{Domain: "news.example.com", Selector: "b", Signer: ek},
	}}
	tests := []struct {
		customer, from, want string
	}{
		{"acme", "example.com", "a"},
		{"acme", "www.example.com", "a"},
		{"acme", "news.example.com", "b"},
		{"acme", "x.news.example.com", "b"},
		{"acme", "badexample.com", ""},
		{"acme", "example.org", ""},
		{"other", "example.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.customer+"/"+tt.from, func(t *testing.T) {
			k, ok := ks.For(tt.customer, tt.from)
			if got := k.Selector; ok != (tt.want != "") || got != tt.want {
				t.Fatalf("For = %q %v, want %q", got, ok, tt.want)
			}
		})
	}
}

func TestNoSignatureWithoutKey(t *testing.T) {
	rk, _, _ := testKeys(t)
	out := run(t, steps(signerFor(t, Key{Domain: "example.org", Selector: "s", Signer: rk})), envelope{mailFrom: "alice@example.com"}, crlfMsg(signMessages["plain"]))
	if len(out.txn.AddedHeaders()) != 0 {
		t.Fatalf("signed with a key of another domain: %v", out.txn.AddedHeaders())
	}
	if _, ok := GatewaySigning(out.txn); ok {
		t.Fatal("signing planned")
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKeysErrors(t *testing.T) {
	rk, ek, _ := testKeys(t)
	dir := t.TempDir()
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ek)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	good1 := writePEM(t, dir, "rsa.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), 0o600)
	good8 := writePEM(t, dir, "ed.pem", "PRIVATE KEY", pkcs8, 0o400)
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"rsa pkcs1", good1, ""},
		{"ed25519 pkcs8", good8, ""},
		{"missing", filepath.Join(dir, "nope.pem"), "does not exist"},
		{"group readable", writePEM(t, dir, "open.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), 0o640), "readable by group or others"},
		{"weak rsa", writePEM(t, dir, "weak.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(weak), 0o600), "1024 bits is too weak"},
		{"ecdsa", writePEM(t, dir, "ec.pem", "PRIVATE KEY", ecDER, 0o600), "cannot sign DKIM"},
		{"public key", writePEM(t, dir, "pub.pem", "PUBLIC KEY", []byte{1, 2}, 0o600), "is not a private key"},
		{"garbage", writePEM(t, dir, "bad.pem", "PRIVATE KEY", []byte{1, 2, 3}, 0o600), "key file"},
		{"directory", dir, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Customers: []config.Customer{{ID: "acme", CustomerAuth: config.CustomerAuth{
				DKIM: []config.DKIMKey{{Domain: "Example.COM.", Selector: "s1", KeyFile: tt.path}}}}}}
			ks, err := LoadKeys(cfg)
			if tt.wantErr == "" {
				if err != nil || len(ks["acme"]) != 1 || ks["acme"][0].Domain != "example.com" {
					t.Fatalf("LoadKeys = %v, %v", ks, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "customers[0].dkim[0].key_file") {
				t.Fatalf("err = %v, want %q at customers[0].dkim[0].key_file", err, tt.wantErr)
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	rk, ek, _ := testKeys(b)
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 300) // ~17 KB
	msg := crlfMsg(signMessages["plain"]) + body
	for _, alg := range []struct {
		name   string
		signer crypto.Signer
	}{{"rsa2048", rk}, {"ed25519", ek}} {
		b.Run(alg.name, func(b *testing.B) {
			chain := steps(adder{unsubscribe}, signerFor(b, Key{Domain: "example.com", Selector: "gw1", Signer: alg.signer}))
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out := run(b, chain, envelope{mailFrom: "alice@example.com", chunk: 65536}, msg)
				if len(out.txn.AddedHeaders()) != len(unsubscribe)+1 {
					b.Fatal("not signed")
				}
			}
		})
	}
}
