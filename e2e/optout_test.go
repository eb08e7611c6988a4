package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

func optoutConfig(storeDir string) string {
	return `
log: {format: json}
store: {backend: memory, path: ` + storeDir + `}
chain: [optout_suppression, bulk_mail, feedback_stamp, unsubscribe_link]
optout:
  unsubscribe:
    base_url: https://unsub.provider.example/u/
customers:
  - id: webhost
    networks: [127.0.0.5/32]
    domains: [webhost.example]
    unsubscribe: add
`
}

func bulkMsg(to string) []byte {
	return []byte(fmt.Sprintf("From: news@webhost.example\r\nTo: %s\r\nSubject: weekly news\r\nPrecedence: bulk\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@webhost.example>\r\n\r\nOur weekly offers.\r\n", to, time.Now().UnixNano()))
}

// TestUnsubscribeThroughPostfix: the gateway adds a one-click link to bulk
// mail; a POST to it records the opt-out; the next message to that
// recipient is refused at RCPT with 550 5.7.1 through the real Postfix,
// while another recipient of the same message is delivered.
func TestUnsubscribeThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: optoutConfig(filepath.Join(t.TempDir(), "store"))})
	d := env.Daemon.Deps()
	h, err := optout.NewUnsubscribeHandler(optout.APIDeps{Store: d.Store, Config: d.Config, Secret: d.Secret, Logger: d.Logger, Clock: d.Clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@webhost.example", To: []string{"alice@example.org"}, Data: bulkMsg("alice@example.org")})
	if !r.Delivered() {
		t.Fatalf("bulk message not delivered: %s", r)
	}
	got, err := env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(strings.NewReader(string(got[0].Data)))
	if err != nil {
		t.Fatal(err)
	}
	lu := m.Header.Get("List-Unsubscribe")
	if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || !strings.HasPrefix(lu, "<https://unsub.provider.example/u/") {
		t.Fatalf("one-click headers not added: List-Unsubscribe %q, Post %q", lu, m.Header.Get("List-Unsubscribe-Post"))
	}
	if m.Header.Get("Feedback-ID") != optout.FeedbackID(d.Secret, "", "webhost", "aupguard") || m.Header.Get(optout.StampHeader) == "" {
		t.Fatalf("stamp headers missing: %v", m.Header)
	}
	u, _ := url.Parse(strings.Trim(lu, "<>"))
	post := func(path string) int {
		resp, err := http.Post(srv.URL+path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(u.Path[:len(u.Path)-3] + "AAA"); code != 400 {
		t.Fatalf("tampered token: %d, want 400", code)
	}
	resp, err := http.Get(srv.URL + u.Path)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	resp.Body.Close()

	// GET recorded nothing: alice still receives mail.
	env.Sink.Reset()
	if r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@webhost.example", To: []string{"alice@example.org"}, Data: bulkMsg("alice@example.org")}); !r.Delivered() {
		t.Fatalf("refused after a mere GET: %s", r)
	}
	// Postfix delivers asynchronously: let that message reach the sink
	// before the sink is reset for the next step.
	if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	if code := post(u.Path); code != 200 {
		t.Fatalf("one-click POST: %d, want 200", code)
	}
	env.Sink.Reset()
	r = env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "news@webhost.example", To: []string{"alice@example.org", "bob@example.org"},
		Data: []byte("From: news@webhost.example\r\nTo: team@example.org\r\nSubject: personal note\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p1@webhost.example>\r\n\r\nHi.\r\n")})
	if len(r.Rcpts) != 2 || r.Rcpts[0].Code != 550 || r.Rcpts[0].EnhancedCode != "5.7.1" || !strings.Contains(r.Rcpts[0].Text, "opted out") {
		t.Fatalf("opted-out recipient not refused with 550 5.7.1: %s", r)
	}
	if !r.Rcpts[1].OK() || !r.Delivered() {
		t.Fatalf("other recipient not delivered: %s", r)
	}
	got, err = env.Sink.WaitFor(1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got[0].To, ",") != "bob@example.org" {
		t.Fatalf("sink got recipients %v, want only bob", got[0].To)
	}
}
