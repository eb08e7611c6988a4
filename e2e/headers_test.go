package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/testkit/golden"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// headersConfig: the private Postfix calls itself mta1.provider.test, a
// provider hostname, and the Received: it adds says "by mta1.provider.test".
// Postfix does not pass that field to milters, so with trusted_received: 0
// (the default) a legitimate message still passes; the first subtest shows
// it (the field is in the delivered copy, and nothing was reported).
const headersConfig = `
log: {format: json}
chain: [header_syntax, sender_identity, header_forgery]
provider:
  hostnames: ["*.provider.test"]
  networks: [198.51.100.0/24]
  authserv_id: mta1.provider.test
customers:
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [webhost.example, "*.webhost.example"]
`

func headersMsg(extra, from string) []byte {
	return []byte(extra + "From: " + from + "\r\nTo: bob@example.org\r\nSubject: headers e2e\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + time.Now().Format("150405.000000000") + "@webhost.example>\r\n\r\nHello.\r\n")
}

func TestHeadersThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: headersConfig})

	t.Run("legitimate message reaches the sink", func(t *testing.T) {
		env.Sink.Reset()
		data := headersMsg("Received: from app.webhost.example by smtp.webhost.example with ESMTP id X1; Mon, 23 Nov 2026 09:59:59 +0000\r\n",
			`"Web Host (app@webhost.example)" <app@news.webhost.example>`)
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "bounce@news.webhost.example", To: []string{"bob@example.org"}, Data: data})
		if !r.Delivered() {
			t.Fatalf("legitimate message refused: %s\n%s", r, env.Log())
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Postfix added its own provider Received: and the milter did not
		// report it: Postfix does not pass it to milters, which is why
		// headers.trusted_received defaults to 0.
		if !bytes.Contains(got[0].Data, []byte("by mta1.provider.test")) {
			t.Errorf("sink message lacks Postfix's own Received:\n%s", got[0].Data)
		}
	})

	refused := []struct {
		name, from, extra, finding string
	}{
		{"forged From", "PayPal <service@paypal.com>", "", "from_domain_not_owned"},
		{"duplicate From", "app@webhost.example\r\nFrom: CEO <ceo@webhost.example>", "", "duplicate_from"},
		{"injected provider Received", "app@webhost.example",
			"Received: from trusted.example ([192.0.2.7])\r\n\tby mta2.provider.test (Postfix) with ESMTP id 4ABCDEF\r\n\tfor <bob@example.org>; Mon, 23 Nov 2026 09:00:00 +0000\r\n",
			"received_forged"},
		{"forged Authentication-Results", "app@webhost.example", "Authentication-Results: mta1.provider.test; dkim=pass header.d=paypal.com\r\n", "auth_results_forged"},
		{"display-name impersonation", `"security@bank.example" <app@webhost.example>`, "", "display_name_impersonation"},
		{"encoded-word CRLF", "app@webhost.example", "Keywords: =?UTF-8?Q?a=0D=0ABcc:_x@example.org?=\r\n", "encoded_word_control"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := len(env.Decisions())
			r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "app@webhost.example", To: []string{"bob@example.org"}, Data: headersMsg(tc.extra, tc.from)})
			if r.Delivered() || r.EndOfData == nil {
				t.Fatalf("not refused at end of data: %s", r)
			}
			if r.EndOfData.Code != 550 || r.EndOfData.EnhancedCode != "5.7.1" {
				t.Fatalf("want 550 5.7.1, got %s", r.EndOfData)
			}
			if strings.Contains(r.EndOfData.Text, "paypal") || strings.Contains(r.EndOfData.Text, "bank.example") {
				t.Errorf("reply text leaks detail: %s", r.EndOfData)
			}
			var found bool
			for _, d := range env.WaitDecisions(before+1, 5*time.Second)[before:] {
				if d["stage"] == "eom" && d["finding"] == tc.finding {
					found = true
				}
			}
			if !found {
				t.Errorf("no eom decision with finding %s:\n%s", tc.finding, env.Log())
			}
		})
	}

	t.Run("forged envelope sender refused at MAIL FROM", func(t *testing.T) {
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "billing@paypal.com", To: []string{"bob@example.org"}, Data: headersMsg("", "app@webhost.example")})
		if r.Mail == nil || r.Mail.Code != 550 || r.Mail.EnhancedCode != "5.7.1" {
			t.Fatalf("want 550 5.7.1 at MAIL, got %s", r)
		}
	})

	t.Run("bounce with null sender and own From is delivered", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "", To: []string{"bob@example.org"}, Data: headersMsg("", "MAILER-DAEMON@webhost.example")})
		if !r.Delivered() {
			t.Fatalf("bounce refused: %s", r)
		}
		if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHeadersExplainGolden runs the golden messages of package headers
// through gateway.Explain (what `aupguard explain` prints) and checks that
// every expected finding shows by name. Explain has no queue id, and stops
// at MAIL FROM when the envelope sender is refused (even in monitor mode).
func TestHeadersExplainGolden(t *testing.T) {
	raw, err := os.ReadFile("../headers/testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Monitor mode: every check runs at end of message, so every finding
	// shows, not only the deciding one.
	raw = bytes.Replace(raw, []byte("  - id: acme\n"), []byte("  - id: acme\n    mode: monitor\n"), 1)
	raw = append(raw, []byte("chain: [header_syntax, sender_identity, header_forgery]\n")...)
	cfg, err := config.Parse(raw, "config.yaml", gateway.ConfigOptions())
	if err != nil {
		t.Fatal(err)
	}
	deps, err := gateway.OpenDeps(cfg, clock.System{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Store.Close() })
	st, err := gateway.Build(deps)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../headers/testdata/*.eml")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		t.Run(name, func(t *testing.T) {
			env, want := readWant(t, strings.TrimSuffix(f, ".eml")+".want")
			if _, skip := env["explain"]; skip {
				t.Skip(env["explain"])
			}
			msg, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in := gateway.ExplainInput{Customer: env["customer"], MailFrom: env["mail_from"], Rcpts: []string{"bob@example.net"}, Message: bytes.NewReader(msg)}
			if c := env["client"]; c != "" {
				in.Client = netip.MustParseAddr(c)
			}
			res, err := gateway.Explain(context.Background(), st, in)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, c := range res.Checks {
				got[c.Name+"/"+c.Finding] = true
			}
			var gotList, wantList []string
			for k := range got {
				gotList = append(gotList, k)
			}
			for _, w := range want {
				if res.Stage == gateway.StageMail && !strings.Contains(w, "/mail_from_") {
					continue
				}
				wantList = append(wantList, w)
			}
			sort.Strings(gotList)
			sort.Strings(wantList)
			if strings.Join(gotList, " ") != strings.Join(wantList, " ") {
				t.Errorf("explain findings %v, want %v", gotList, wantList)
			}
			if len(wantList) > 0 && (res.Action != "reject" || res.Code != 550 || res.Enhanced != "5.7.1") {
				t.Errorf("explain verdict %s %d %s, want reject 550 5.7.1", res.Action, res.Code, res.Enhanced)
			}
		})
	}
}

// readWant reads a golden .want file (package internal/golden): the
// "# key: value" envelope lines and the "check/finding" lines.
func readWant(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	f := golden.Read(t, path)
	return f.Env, f.Lines
}
