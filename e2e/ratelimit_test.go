package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// ratelimitConfig: one customer limited to 3 messages a minute, one to 2
// recipients per message, one mailbomb-capped (2 a day to one recipient),
// one with a 2000-byte message size.
const ratelimitConfig = `
log: {format: json}
chain: [message_size, recipients_per_message, rate_limit]
customers:
  - id: slow
    networks: [127.0.0.21/32]
    domains: [slow.example]
    limits: {messages_per_minute: 3}
  - id: capped
    networks: [127.0.0.22/32]
    domains: [capped.example]
    limits: {recipients_per_message: 2}
  - id: bomber
    networks: [127.0.0.23/32]
    domains: [bomber.example]
    limits: {per_recipient_per_day: 2}
  - id: small
    networks: [127.0.0.24/32]
    domains: [small.example]
    limits: {message_size: 2000}
`

func rlMsg(from, to string, i int) []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: volume %d\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d.%d@test>\r\n\r\nHello.\r\n", from, to, i, time.Now().UnixNano(), i))
}

func TestRateLimitThroughPostfix(t *testing.T) {
	env := gwtest.Start(t, gwtest.Options{Config: ratelimitConfig})

	t.Run("N messages per minute go, the next gets 451 4.7.1", func(t *testing.T) {
		env.Sink.Reset()
		for i := 0; i < 3; i++ {
			r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.21", From: "news@slow.example", To: []string{"a@example.org"}, Data: rlMsg("news@slow.example", "a@example.org", i)})
			if !r.Delivered() {
				t.Fatalf("message %d refused:\n%s", i, r)
			}
		}
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.21", From: "news@slow.example", To: []string{"a@example.org"}, Data: rlMsg("news@slow.example", "a@example.org", 3)})
		if r.Delivered() || r.Mail == nil || r.Mail.Code != 451 || r.Mail.EnhancedCode != "4.7.1" || !strings.Contains(r.Mail.Text, "messages_per_minute") || !strings.Contains(r.Mail.Text, "retry in ") {
			t.Fatalf("4th message: want 451 4.7.1 naming messages_per_minute at MAIL, got\n%s", r)
		}
		if _, err := env.Sink.WaitFor(3, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if n := len(env.Sink.Messages()); n != 3 {
			t.Fatalf("sink has %d messages, want 3", n)
		}
		found := false
		for _, d := range env.Decisions() {
			if d["customer"] == "slow" && d["finding"] == "rate_limit_exceeded" && strings.Contains(fmt.Sprint(d["detail"]), "messages_per_minute") {
				found = true
			}
		}
		if !found {
			t.Errorf("no decision line names the limit:\n%s", env.Log())
		}
	})

	t.Run("recipients over the per-message cap get 452 4.5.3, the rest are delivered", func(t *testing.T) {
		env.Sink.Reset()
		to := []string{"r1@example.org", "r2@example.org", "r3@example.org", "r4@example.org"}
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.22", From: "app@capped.example", To: to, Data: rlMsg("app@capped.example", "r1@example.org", 0)})
		if !r.Delivered() || len(r.Rcpts) != 4 {
			t.Fatalf("not delivered:\n%s", r)
		}
		for i, rr := range r.Rcpts {
			if i < 2 && !rr.OK() {
				t.Errorf("rcpt %d refused: %s", i, rr.Reply)
			}
			if i >= 2 && (rr.Code != 452 || rr.EnhancedCode != "4.5.3") {
				t.Errorf("rcpt %d: want 452 4.5.3, got %s", i, rr.Reply)
			}
		}
		got, err := env.Sink.WaitFor(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rcpts := append([]string(nil), got[0].To...)
		sort.Strings(rcpts)
		if strings.Join(rcpts, ",") != "r1@example.org,r2@example.org" {
			t.Fatalf("sink recipients %v", rcpts)
		}
	})

	t.Run("mailbombing one recipient: 450 4.7.1 for that recipient only", func(t *testing.T) {
		env.Sink.Reset()
		for i := 0; i < 2; i++ {
			to := fmt.Sprintf("Victim+%d@example.org", i)
			if r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.23", From: "x@bomber.example", To: []string{to}, Data: rlMsg("x@bomber.example", to, i)}); !r.Delivered() {
				t.Fatalf("message %d refused:\n%s", i, r)
			}
		}
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.23", From: "x@bomber.example", To: []string{"victim@example.org", "other@example.org"}, Data: rlMsg("x@bomber.example", "victim@example.org", 2)})
		if len(r.Rcpts) != 2 || r.Rcpts[0].Code != 450 || r.Rcpts[0].EnhancedCode != "4.7.1" || !r.Rcpts[1].OK() || !r.Delivered() {
			t.Fatalf("want 450 4.7.1 for the victim (sub-addresses and case folded) and delivery to the other:\n%s", r)
		}
		if strings.Contains(env.Log(), "victim@example.org") {
			t.Error("the recipient address appears in plain text in the log")
		}
	})

	t.Run("message size: declared SIZE refused at MAIL, 552 5.3.4", func(t *testing.T) {
		data := rlMsg("x@small.example", "a@example.org", 0)
		data = append(data, []byte(strings.Repeat("0123456789012345678901234567890123456789012345678\r\n", 60))...)
		r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.24", From: "x@small.example", To: []string{"a@example.org"}, Data: data, Size: int64(len(data))})
		if r.Delivered() || r.Mail == nil || r.Mail.Code != 552 || r.Mail.EnhancedCode != "5.3.4" {
			t.Fatalf("want 552 5.3.4 at MAIL:\n%s", r)
		}
		r = env.Send(testenv.SendOptions{LocalAddr: "127.0.0.24", From: "x@small.example", To: []string{"a@example.org"}, Data: data})
		if r.Delivered() || r.EndOfData == nil || r.EndOfData.Code != 552 || r.EndOfData.EnhancedCode != "5.3.4" {
			t.Fatalf("without SIZE: want 552 5.3.4 at end of data:\n%s", r)
		}
	})
}

// TestRateLimitRedisOutageThroughPostfix: the counters on Redis, Redis
// stopped mid-run: every message gets the gateway's own 451 4.3.0 (the
// milter answers: no crash, no dropped milter connection, which Postfix
// would turn into its milter_default_action), and once Redis is back the
// mail flows again within a second.
func TestRateLimitRedisOutageThroughPostfix(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	cfg := `
log: {format: json}
chain: [rate_limit]
store: {backend: redis, timeout: 300ms, redis: {addrs: ["` + r.Addr() + `"], dial_timeout: 200ms}}
customers:
  - id: slow
    networks: [127.0.0.21/32]
    domains: [slow.example]
    limits: {messages_per_minute: 1000, recipients_per_day: 1000}
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	send := func(i int) *testenv.SMTPResult {
		return env.Send(testenv.SendOptions{LocalAddr: "127.0.0.21", From: "news@slow.example", To: []string{"a@example.org"}, Data: rlMsg("news@slow.example", "a@example.org", i)})
	}
	if res := send(0); !res.Delivered() {
		t.Fatalf("before the outage:\n%s", res)
	}
	r.Stop()
	for i := 1; i <= 3; i++ {
		res := send(i)
		// The first stage that needs Redis answers: MAIL FROM, or RCPT TO
		// when the MAIL FROM look passed on the use Redis reported under a
		// second ago.
		got := res.Mail
		if got != nil && got.Code == 250 && len(res.Rcpts) > 0 {
			got = &res.Rcpts[0].Reply
		}
		if res.Delivered() || got == nil || got.Code != 451 || got.EnhancedCode != "4.3.0" || !strings.Contains(got.Text, "ref ") {
			t.Fatalf("during the outage, message %d: want the gateway's 451 4.3.0 with a reference at MAIL or RCPT, got\n%s", i, res)
		}
	}
	r.Start()
	back := time.Now()
	for i := 4; ; i++ {
		res := send(i)
		if res.Delivered() {
			break
		}
		if time.Since(back) > time.Second {
			t.Fatalf("not back to normal a second after Redis restarted:\n%s", res)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("mail flows again %s after Redis restarted", time.Since(back).Round(time.Millisecond))
}
