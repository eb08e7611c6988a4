package auth_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/aupguard/aupguard/internal/checks/auth"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/resolver"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/golden"
)

// goldenCase is one testdata/cases/NAME.{eml,dns,want} (see testdata/README).
type goldenCase struct {
	name     string
	customer string
	mailFrom string
	sign     []string // domain, selector
	tamper   [2]string
	verdict  string
	signed   []string // domain, selector
	want     []string
	file     *golden.File
}

func loadCases(t *testing.T) []goldenCase {
	t.Helper()
	files, err := filepath.Glob("testdata/cases/*.want")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	var out []goldenCase
	for _, f := range files {
		w := golden.Read(t, f)
		c := goldenCase{name: strings.TrimSuffix(filepath.Base(f), ".want"), file: w, want: w.Lines}
		for k, v := range w.Env {
			switch k {
			case "customer":
				c.customer = v
			case "mail_from":
				c.mailFrom = v
			case "sign":
				c.sign = strings.Fields(v)
			case "tamper":
				a, b, _ := strings.Cut(v, " => ")
				c.tamper = [2]string{a, b}
			case "verdict":
				c.verdict = v
			case "signed":
				c.signed = strings.Fields(v)
			default:
				t.Fatalf("%s: unknown key %q", f, k)
			}
		}
		if c.customer == "" || c.verdict == "" {
			t.Fatalf("%s: customer and verdict are required", f)
		}
		out = append(out, c)
	}
	return out
}

// keyDir copies the test keys where their mode can be 0600 (git keeps 0644).
func keyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, _ := filepath.Glob("testdata/keys/*.pem")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// buildState builds the gateway as serve does, with the config of
// testdata/config.yaml pointed at the fake DNS server.
func buildState(t testing.TB, dnsAddr, keys string) *gateway.State {
	t.Helper()
	raw, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("DNSADDR", dnsAddr, "KEYDIR", keys).Replace(string(raw))
	cfg, err := config.Parse([]byte(text), "testdata/config.yaml", gateway.ConfigOptions())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	deps, err := gateway.OpenDeps(cfg, clock.System{}, nil)
	if err != nil {
		t.Fatalf("deps: %v", err)
	}
	t.Cleanup(func() { _ = deps.Store.Close() })
	st, err := gateway.Build(deps)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return st
}

func TestGolden(t *testing.T) {
	keys := keyDir(t)
	customerKey, err := auth.ReadDKIMKey(filepath.Join(keys, "customer-rsa.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range loadCases(t) {
		t.Run(c.name, func(t *testing.T) {
			srv := fakedns.StartFile(t, "testdata/cases/"+c.name+".dns")
			st := buildState(t, srv.Addr(), keys)
			msg, err := os.ReadFile("testdata/cases/" + c.name + ".eml")
			if err != nil {
				t.Fatal(err)
			}
			msg = bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))
			if c.sign != nil {
				var out bytes.Buffer
				if err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
					Domain: c.sign[0], Selector: c.sign[1], Signer: customerKey,
					HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationSimple,
				}); err != nil {
					t.Fatal(err)
				}
				msg = out.Bytes()
			}
			if c.tamper[0] != "" {
				if !bytes.Contains(msg, []byte(c.tamper[0])) {
					t.Fatalf("tamper: %q not in the message", c.tamper[0])
				}
				msg = bytes.Replace(msg, []byte(c.tamper[0]), []byte(c.tamper[1]), 1)
			}
			res, err := gateway.Explain(context.Background(), st, gateway.ExplainInput{
				Customer: c.customer, MailFrom: c.mailFrom, Rcpts: []string{"rcpt@example.net"}, Message: bytes.NewReader(msg),
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			specs := policy.SpecIndex(gateway.Specs())
			for _, ch := range res.Checks {
				got = append(got, fmt.Sprintf("%s %s/%s %s", ch.Stage, ch.Name, ch.Finding, ch.Action))
				if _, ok := specs[ch.Name].Finding(ch.Finding); !ok && ch.Finding != policy.FindingError {
					t.Errorf("check %s reported %s, which its spec does not declare", ch.Name, ch.Finding)
				}
			}
			c.file.Check(t, got)
			if t.Failed() {
				for _, ch := range res.Checks {
					t.Logf("%s: %s", ch.Name, ch.Detail)
				}
			}
			verdict := res.Action
			if res.Code != 0 {
				verdict += fmt.Sprintf(" %d %s", res.Code, res.Enhanced)
			}
			c.file.CheckEnv(t, "verdict", verdict)
			checkSignature(t, c, res, msg, srv.Addr())
		})
	}
}

// checkSignature verifies the gateway's signature, when the case expects
// one, with go-msgauth's verifier against the case's DNS; and that there
// is none otherwise.
func checkSignature(t *testing.T, c goldenCase, res *gateway.ExplainResult, msg []byte, dnsAddr string) {
	t.Helper()
	var sigs []policy.Header
	var out bytes.Buffer
	for _, h := range res.Added {
		if h.Name == "DKIM-Signature" {
			sigs = append(sigs, h)
		}
		out.WriteString(h.Name + ":" + h.Value + "\r\n")
	}
	out.Write(msg)
	if c.signed == nil {
		if len(sigs) != 0 {
			t.Fatalf("unexpected gateway signature %v", sigs)
		}
		return
	}
	if len(sigs) != 1 {
		t.Fatalf("%d gateway signatures, want 1", len(sigs))
	}
	r, err := resolver.New(config.DNSConfig{Servers: []string{dnsAddr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(out.Bytes()), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return r.LookupTXT(ctx, name)
	}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range vs {
		if v.Domain == c.signed[0] {
			found = true
			if v.Err != nil {
				t.Fatalf("gateway signature does not verify: %v\n%s", v.Err, out.String())
			}
		}
	}
	if !found || !strings.Contains(sigs[0].Value, "s="+c.signed[1]+";") {
		t.Fatalf("no signature of %v in %v", c.signed, sigs)
	}
}

// TestSnippetLoads checks that configs/snippets/auth.yaml is a valid config.
func TestSnippetLoads(t *testing.T) {
	keys := keyDir(t)
	raw, err := os.ReadFile("../../../configs/snippets/auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "/etc/aupguard/dkim/", keys+"/")
	text = strings.ReplaceAll(text, "acme-2026.pem", "gw-rsa.pem")
	text = strings.ReplaceAll(text, "acme-ed-2026.pem", "gw-ed25519.pem")
	cfg, err := config.Parse([]byte(text), "auth.yaml", gateway.ConfigOptions())
	if err != nil {
		t.Fatalf("snippet: %v", err)
	}
	if len(cfg.Customers) == 0 || len(cfg.Customers[0].DKIM) == 0 || cfg.DNS.Timeout == 0 {
		t.Fatalf("snippet lost its settings: %+v", cfg.Customers)
	}
	if _, err := auth.LoadKeys(cfg); err != nil {
		t.Fatal(err)
	}
}
