package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// loginsConfig: one customer with two mailboxes (SASL logins), 3
// messages an hour for each login and 5 for the customer.
const loginsConfig = `
log: {format: json}
chain: [rate_limit]
customers:
  - id: acme
    logins: [alice@acme.example, bob@acme.example]
    domains: [acme.example]
    limits: {messages_per_hour: 5}
    login_limits: {messages_per_hour: 3}
`

// TestLoginLimitsThroughPostfix: two mailboxes of one customer through
// real Postfix (submission with SASL). One bursts past its per-login
// hourly limit and is deferred with 451 4.7.1; the other keeps sending;
// the customer's own limit counts both; every decision line names its
// login.
func TestLoginLimitsThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: loginsConfig, SASLUsers: map[string]string{"alice@acme.example": "a-s3cret", "bob@acme.example": "b-s3cret"}})
	send := func(login, pw string, i int) *testenv.SMTPResult {
		from := strings.Split(login, "@")[0] + "@acme.example"
		return env.Submit(testenv.SendOptions{LocalAddr: "127.0.0.9", Auth: &testenv.Credentials{Username: login, Password: pw},
			From: from, To: []string{"x@example.org"}, Data: rlMsg(from, "x@example.org", i)})
	}
	for i := 0; i < 3; i++ {
		if r := send("alice@acme.example", "a-s3cret", i); !r.Delivered() {
			t.Fatalf("alice's message %d refused:\n%s", i, r)
		}
	}
	r := send("alice@acme.example", "a-s3cret", 3)
	if r.Delivered() || r.Mail == nil || r.Mail.Code != 451 || r.Mail.EnhancedCode != "4.7.1" || !strings.Contains(r.Mail.Text, "login messages_per_hour") {
		t.Fatalf("alice's 4th message: want 451 4.7.1 naming the login's messages_per_hour, got\n%s", r)
	}
	// Bob is not throttled by alice's burst: 2 more fill the customer's 5.
	for i := 0; i < 2; i++ {
		if r := send("bob@acme.example", "b-s3cret", 10+i); !r.Delivered() {
			t.Fatalf("bob's message %d refused after alice's burst:\n%s", i, r)
		}
	}
	// The customer's own limit counted alice's 3 and bob's 2.
	r = send("bob@acme.example", "b-s3cret", 12)
	if r.Delivered() || r.Mail == nil || r.Mail.Code != 451 || r.Mail.EnhancedCode != "4.7.1" ||
		!strings.Contains(r.Mail.Text, "(messages_per_hour)") || strings.Contains(r.Mail.Text, "login") {
		t.Fatalf("bob's 3rd message: want 451 4.7.1 for the customer's messages_per_hour, got\n%s", r)
	}
	if _, err := env.Sink.WaitFor(5, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(env.Sink.Messages()); n != 5 {
		t.Fatalf("sink has %d messages, want 5", n)
	}
	count := map[string]int{}
	for _, d := range env.Decisions() {
		if d["customer"] != "acme" {
			continue
		}
		login, _ := d["login"].(string)
		count[fmt.Sprintf("%s/%s/%v", login, d["stage"], d["effective"])]++
	}
	want := map[string]int{
		"alice@acme.example/eom/accept": 3, "alice@acme.example/mail/defer": 1,
		"bob@acme.example/eom/accept": 2, "bob@acme.example/mail/defer": 1,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("decision lines %s: %d, want %d (all: %v)", k, count[k], n, count)
		}
	}
}
