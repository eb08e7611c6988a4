package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

const coreConfig = `
log: {format: json}
chain: [sender_identity]
customers:
  - id: acme
    name: ACME Ltd
    abuse_contact: abuse@acme.example
    logins: ["acme@acme.example"]
    domains: [acme.example]
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [webhost.example]
  - id: trial
    networks: [127.0.0.6/32]
    domains: [trial.example]
    mode: monitor
`

func msg(from, to, subject string) []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@test>\r\n\r\nHello.\r\n", from, to, subject, time.Now().UnixNano()))
}

func TestCoreThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: coreConfig, SASLUsers: map[string]string{"acme@acme.example": "s3cret"}})

	t.Run("authenticated customer is delivered", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Submit(testenv.SendOptions{LocalAddr: "127.0.0.9", Auth: &testenv.Credentials{Username: "acme@acme.example", Password: "s3cret"},
			From: "news@acme.example", To: []string{"alice@example.org"}, Data: msg("news@acme.example", "alice@example.org", "sasl")})
		if !r.Delivered() {
			t.Fatalf("not delivered: %s", r)
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].From != "news@acme.example" || strings.Join(got[0].To, ",") != "alice@example.org" || !strings.Contains(string(got[0].Data), "Subject: sasl") {
			t.Fatalf("sink got %+v", got[0])
		}
	})

	t.Run("customer identified by network is delivered", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "app@webhost.example", To: []string{"bob@example.org"}, Data: msg("app@webhost.example", "bob@example.org", "net")})
		if !r.Delivered() {
			t.Fatalf("not delivered: %s", r)
		}
		if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unidentified client is refused at MAIL FROM", func(t *testing.T) {
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.9", From: "spam@elsewhere.example", To: []string{"victim@example.org"}, Data: msg("spam@elsewhere.example", "victim@example.org", "relay")})
		if r.Mail == nil || r.Mail.Code != 550 || r.Mail.EnhancedCode != "5.7.1" || !strings.Contains(r.Mail.Text, "ref ") {
			t.Fatalf("want 550 5.7.1 with a reference at MAIL, got %s", r)
		}
		if r.Delivered() {
			t.Fatal("relayed for an unidentified client")
		}
	})

	t.Run("monitor mode delivers and logs the would-be decision", func(t *testing.T) {
		env.Sink.Reset()
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.6", From: "x@trial.example", To: []string{"carol@example.org"}, Data: msg("ceo@bank.example", "carol@example.org", "monitor")})
		if !r.Delivered() {
			t.Fatalf("monitor mode refused: %s", r)
		}
		if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, d := range env.WaitDecisions(1, 5*time.Second) {
			if d["customer"] == "trial" && d["stage"] == "eom" && d["mode"] == "monitor" && d["action"] == "reject" && d["effective"] == "accept" {
				found = true
				for _, k := range []string{"queue_id", "ref", "check", "finding", "code", "enhanced"} {
					if v, ok := d[k]; !ok || v == "" || v == "-" {
						t.Errorf("decision line lacks %s: %v", k, d)
					}
				}
			}
		}
		if !found {
			t.Fatalf("no monitor-mode would-be reject in the log:\n%s", env.Log())
		}
	})

	t.Run("reload: a bad config is refused and the old one keeps running", func(t *testing.T) {
		if err := env.Reload("customers: [{id: broken, domains: [\"bad domain\"]}]\n"); err == nil {
			t.Fatal("bad config accepted")
		}
		if !strings.Contains(env.Log(), "reload refused: config error") {
			t.Fatalf("refusal not logged:\n%s", env.Log())
		}
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "app@webhost.example", To: []string{"bob@example.org"}, Data: msg("app@webhost.example", "bob@example.org", "after bad reload")})
		if !r.Delivered() {
			t.Fatalf("old config not kept: %s", r)
		}
		// A good reload that adds a customer for 127.0.0.7 takes effect.
		if err := env.Reload(coreConfig + "  - id: newcomer\n    networks: [127.0.0.7/32]\n    domains: [newcomer.example]\n"); err != nil {
			t.Fatal(err)
		}
		r = env.Send(testenv.SendOptions{LocalAddr: "127.0.0.7", From: "hi@newcomer.example", To: []string{"bob@example.org"}, Data: msg("hi@newcomer.example", "bob@example.org", "after good reload")})
		if !r.Delivered() {
			t.Fatalf("new customer not recognised after reload: %s", r)
		}
	})
}
