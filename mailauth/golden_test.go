package mailauth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/aupguard/aupguard/clock"
	"github.com/aupguard/aupguard/config"
	"github.com/aupguard/aupguard/gateway"
	"github.com/aupguard/aupguard/internal/fakedns"
	"github.com/aupguard/aupguard/policy"
)

var update = flag.Bool("update", false, "rewrite the .golden files")

// goldenConfig is the gateway config of every golden case: only the
// authentication checks, two egress addresses (SPF must pass for both),
// one customer whose gateway signs two domains, and one that requires
// alignment. KEYDIR and DNSADDR are filled in per run.
const goldenConfig = `
log: {format: json}
chain: [spf, dkim, dmarc, dkim_sign]
dns: {servers: ["DNSADDR"], timeout: 500ms}
provider:
  egress_ips: [192.0.2.10, "2001:db8::10"]
customers:
  - id: acme
    networks: [192.0.2.0/28]
    domains: [acme.example, "*.acme.example", signed.example, "*.signed.example", ed.example, other.example, none.example, quar.example, orgfb.example, "*.orgfb.example", strictd.example, "*.strictd.example", broken.example, nodmarc.example]
    dkim:
      - {domain: signed.example, selector: gw1, key_file: KEYDIR/gateway-rsa.pem}
      - {domain: ed.example, selector: gw2, key_file: KEYDIR/gateway-ed25519.pem}
  - id: strict
    networks: [192.0.2.16/28]
    domains: [strict.example]
    require_alignment: true
`

// keyDir copies the test keys into a private directory with mode 0600:
// the signer refuses group- or world-readable keys, and git does not keep
// file modes.
func keyDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir("testdata/keys")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join("testdata/keys", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// readKey parses a PEM private key of testdata/keys (PKCS#1 or PKCS#8),
// independently of the gateway's loader.
func readKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/keys", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return k.(crypto.Signer)
}

// txtRecord is the DKIM key record (RFC 6376 §3.6.1) of a test key in
// zone-file form, split in strings of at most 255 octets (RFC 1035 §3.3.14).
func txtRecord(t testing.TB, name string) string {
	t.Helper()
	var rec string
	switch pub := readKey(t, name).Public().(type) {
	case ed25519.PublicKey:
		rec = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
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

var pubRe = regexp.MustCompile(`@PUB\(([a-z0-9-]+)\)@`)

// zone reads a .dns file, replacing @PUB(keyname)@ by the key's record.
func zone(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return pubRe.ReplaceAllStringFunc(string(data), func(m string) string {
		return txtRecord(t, pubRe.FindStringSubmatch(m)[1])
	})
}

// directives are the "#! key: value" lines heading a golden .eml, which
// are not part of the message.
type directives struct {
	customer, mailFrom, helo string
	// sign is "KEYNAME d=DOMAIN s=SELECTOR": the customer signs the
	// message itself (relaxed/relaxed) before it reaches the gateway.
	sign string
	// tamper replaces the first "Hello" of the body after signing.
	tamper bool
}

func parseEML(t testing.TB, path string) (directives, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := directives{customer: "acme"}
	for bytes.HasPrefix(data, []byte("#!")) {
		i := bytes.IndexByte(data, '\n')
		line := strings.TrimSpace(string(data[2:i]))
		data = data[i+1:]
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "customer":
			d.customer = v
		case "mail-from":
			d.mailFrom = v
		case "helo":
			d.helo = v
		case "sign":
			d.sign = v
		case "tamper":
			d.tamper = true
		default:
			t.Fatalf("%s: unknown directive %q", path, k)
		}
	}
	// Messages travel with CRLF line ends (RFC 5322 §2.1).
	msg := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	if d.sign != "" {
		f := strings.Fields(d.sign)
		opts := &dkim.SignOptions{Signer: readKey(t, f[0]), HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization: dkim.CanonicalizationRelaxed, HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}}
		for _, kv := range f[1:] {
			switch {
			case strings.HasPrefix(kv, "d="):
				opts.Domain = kv[2:]
			case strings.HasPrefix(kv, "s="):
				opts.Selector = kv[2:]
			}
		}
		var out bytes.Buffer
		if err := dkim.Sign(&out, bytes.NewReader(msg), opts); err != nil {
			t.Fatalf("%s: signing: %v", path, err)
		}
		msg = out.Bytes()
	}
	if d.tamper {
		i := bytes.Index(msg, []byte("\r\n\r\n"))
		msg = append(msg[:i:i], bytes.Replace(msg[i:], []byte("Hello"), []byte("Hullo"), 1)...)
	}
	return d, msg
}

// openState builds the gateway as serve would (OpenDeps: store, secret,
// the caching resolver pointed at dnsAddr; Build: the registered checks).
func openState(t testing.TB, dnsAddr string) *gateway.State {
	t.Helper()
	y := strings.NewReplacer("KEYDIR", keyDir(t), "DNSADDR", dnsAddr).Replace(goldenConfig)
	cfg, err := config.Parse([]byte(y), "golden.yaml", gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	deps, err := gateway.OpenDeps(cfg, clock.System{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Store.Close() })
	st, err := gateway.Build(deps)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lookupTXT answers key lookups of an independent verifier by asking the
// fake server directly with a plain miekg/dns client (not through the
// gateway's resolver).
func lookupTXT(addr string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
		c := &dns.Client{Net: "tcp"}
		r, _, err := c.Exchange(m, addr)
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
}

// render is the golden form of an explain result: the verdict, every
// finding, and the headers added, a DKIM-Signature being shown by its
// stable tags and whether go-msgauth's verifier accepts it.
func render(res *gateway.ExplainResult, msg []byte, dnsAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "verdict: %s at %s", res.Action, res.Stage)
	if res.Code != 0 {
		fmt.Fprintf(&b, ": %d %s %s", res.Code, res.Enhanced, res.Text)
	}
	if res.Check != "" {
		fmt.Fprintf(&b, " [%s/%s]", res.Check, res.Finding)
	}
	b.WriteString("\nfindings:\n")
	for _, c := range res.Checks {
		fmt.Fprintf(&b, "  %s %s %s -> %s", c.Stage, c.Name, c.Finding, c.Action)
		if c.Detail != "" {
			// The fake server's port changes at every run.
			fmt.Fprintf(&b, ": %s", strings.ReplaceAll(c.Detail, dnsAddr, "FAKEDNS"))
		}
		b.WriteString("\n")
	}
	b.WriteString("added:\n")
	for _, h := range res.Added {
		if !strings.EqualFold(h.Name, "DKIM-Signature") {
			fmt.Fprintf(&b, "  %s:%s\n", h.Name, h.Value)
			continue
		}
		tags := map[string]string{}
		for _, tv := range strings.Split(h.Value, ";") {
			k, v, _ := strings.Cut(tv, "=")
			tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
		}
		fmt.Fprintf(&b, "  DKIM-Signature: v=%s a=%s c=%s d=%s s=%s h=%s verify=%s\n",
			tags["v"], tags["a"], tags["c"], tags["d"], tags["s"], tags["h"], verifyAdded(res.Added, msg, dnsAddr))
	}
	return b.String()
}

// verifyAdded verifies the gateway's signature as a receiver would see
// the message: the added fields above the received ones (the milter
// inserts them at the top, in order), with go-msgauth's verifier.
func verifyAdded(added []policy.Header, msg []byte, dnsAddr string) string {
	var out bytes.Buffer
	for _, h := range added {
		out.WriteString(h.Name + ":" + h.Value + "\r\n")
	}
	out.Write(msg)
	vs, err := dkim.VerifyWithOptions(&out, &dkim.VerifyOptions{LookupTXT: lookupTXT(dnsAddr)})
	if err != nil {
		return "error: " + err.Error()
	}
	var res []string
	for _, v := range vs {
		if v.Err != nil {
			res = append(res, v.Domain+":fail("+v.Err.Error()+")")
		} else {
			res = append(res, v.Domain+":pass")
		}
	}
	sort.Strings(res)
	return strings.Join(res, ",")
}

// TestGolden runs every testdata/cases/NAME.eml, with the DNS of NAME.dns,
// through the whole gateway (gateway.Explain) and compares the outcome
// with NAME.golden.
func TestGolden(t *testing.T) {
	emls, err := filepath.Glob("testdata/cases/*.eml")
	if err != nil || len(emls) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, eml := range emls {
		base := strings.TrimSuffix(eml, ".eml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			zt := zone(t, base+".dns")
			srv := fakedns.Start(t, zt)
			st := openState(t, srv.Addr())
			d, msg := parseEML(t, eml)
			res, err := gateway.Explain(context.Background(), st, gateway.ExplainInput{
				Customer: d.customer, MailFrom: d.mailFrom, Helo: d.helo, Message: bytes.NewReader(msg)})
			if err != nil {
				t.Fatal(err)
			}
			got := render(res, msg, srv.Addr())
			if *update {
				if err := os.WriteFile(base+".golden", []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(base + ".golden")
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("outcome differs from %s.golden\n--- got\n%s--- want\n%s", base, got, want)
			}
		})
	}
}

// TestGoldenCasesAreHonest guards the golden files themselves: a case
// whose name says it is refused must be refused, one that says it is
// delivered must be accepted, so that -update cannot silently bless a
// regression of the decisions the issue asks for.
func TestGoldenCasesAreHonest(t *testing.T) {
	goldens, _ := filepath.Glob("testdata/cases/*.golden")
	if len(goldens) == 0 {
		t.Fatal("no golden files")
	}
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(g)
		first, _, _ := strings.Cut(string(data), "\n")
		t.Run(name, func(t *testing.T) {
			switch {
			case strings.HasPrefix(name, "reject_"):
				if !strings.HasPrefix(first, "verdict: reject") {
					t.Errorf("%s: %s", name, first)
				}
			case strings.HasPrefix(name, "defer_"):
				if !strings.HasPrefix(first, "verdict: defer") || !strings.Contains(first, "451 4.4.3") {
					t.Errorf("%s: %s", name, first)
				}
			case strings.HasPrefix(name, "accept_"):
				if !strings.HasPrefix(first, "verdict: accept") {
					t.Errorf("%s: %s", name, first)
				}
			default:
				t.Errorf("%s: a case name starts with accept_, reject_ or defer_", name)
			}
			if strings.Contains(string(data), "verify=") && !regexp.MustCompile(`verify=[a-z0-9.]+:pass\n`).Match(data) {
				t.Errorf("%s: the gateway's signature does not verify", name)
			}
		})
	}
}
