package content_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/content"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

func TestMalwareThroughPostfix(t *testing.T) {
	cd := content.StartClamd(t, 1<<20)
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(t.TempDir(), "store") + `}
chain: [malware]
content:
  clamd: {address: "` + cd.Addr() + `", timeout: 5s, stream_max_length: 1048576}
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	infected := append([]byte("MZ program "), content.TestPattern...)
	send := func(m content.Message, i int) *testenv.SMTPResult {
		return env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "a@acme.example", To: []string{"b@mailbox.example"}, Data: m.Raw(i)})
	}
	cases := []struct {
		name    string
		msg     content.Message
		refused bool
	}{
		{"base64 attachment carrying the pattern is refused", content.AttachMsg("invoice.exe", infected), true},
		{"zip attachment carrying the pattern is refused", content.AttachMsg("invoice.zip", content.ZipOf(t, "invoice.exe", infected)), true},
		{"clean attachment is delivered", content.AttachMsg("report.pdf", []byte("%PDF-1.4 harmless")), false},
		{"clean text is delivered", content.PlainMsg("Hello.\r\n"), false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env.Sink.Reset()
			r := send(c.msg, i)
			if c.refused {
				e := r.EndOfData
				if e == nil || e.Code != 550 || e.EnhancedCode != "5.7.1" || !strings.Contains(e.Text, content.TestSigName) || !strings.Contains(e.Text, "ref ") {
					t.Fatalf("want 550 5.7.1 naming %s with a reference, got %s", content.TestSigName, r)
				}
				return
			}
			if !r.Delivered() {
				t.Fatalf("clean mail refused: %s", r)
			}
			if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("clamd down tempfails, then mail flows again when it is back", func(t *testing.T) {
		cd.Kill()
		r := send(content.PlainMsg("Hello.\r\n"), 10)
		if e := r.EndOfData; e == nil || e.Code/100 != 4 || r.Delivered() {
			t.Fatalf("clamd down: want a temporary failure, got %s", r)
		}
		cd.Start()
		deadline := time.Now().Add(15 * time.Second)
		for i := 11; ; i++ {
			env.Sink.Reset()
			r := send(content.AttachMsg("x.exe", infected), i)
			if e := r.EndOfData; e != nil && e.Code == 550 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("clamd back but infected mail not refused: %s", r)
			}
			time.Sleep(content.BreakerPause)
		}
		env.Sink.Reset()
		if r := send(content.PlainMsg("Hello again.\r\n"), 99); !r.Delivered() {
			t.Fatalf("clean mail after recovery: %s", r)
		}
	})
}

func TestSpamScoreThroughPostfix(t *testing.T) {
	rs := content.StartRspamd(t)
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(t.TempDir(), "store") + `}
chain: [spam_score]
content:
  rspamd: {url: "` + rs.URL() + `", timeout: 5s}
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
  - id: holdme
    networks: [127.0.0.6/32]
    domains: [hold.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	send := func(from, subject string, i int) *testenv.SMTPResult {
		m := content.SubjectMsg(subject, "Some ordinary text.\r\n")
		return env.Send(testenv.SendOptions{LocalAddr: from, From: "a@acme.example", To: []string{"b@mailbox.example"}, Data: m.Raw(i)})
	}
	t.Run("message scoring above reject is refused", func(t *testing.T) {
		r := send("127.0.0.5", "win "+content.SpamToken, 1)
		if e := r.EndOfData; e == nil || e.Code != 550 || e.EnhancedCode != "5.7.1" || r.Delivered() {
			t.Fatalf("want 550 5.7.1, got %s", r)
		}
	})
	t.Run("clean message is delivered", func(t *testing.T) {
		env.Sink.Reset()
		if r := send("127.0.0.5", "quarterly report", 2); !r.Delivered() {
			t.Fatalf("clean mail refused: %s", r)
		}
		if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("message scoring above hold is held in Postfix's hold queue, score in the decision", func(t *testing.T) {
		before := len(env.Decisions())
		r := send("127.0.0.6", "quarterly report", 3)
		if !r.Delivered() {
			t.Fatalf("held message must be accepted (250), got %s", r)
		}
		held := false
		for _, m := range env.Postfix.Queue() {
			if m.QueueName == "hold" {
				held = true
			}
		}
		if !held {
			t.Fatalf("no message in the hold queue: %+v", env.Postfix.Queue())
		}
		ds := env.WaitDecisions(before+1, 5*time.Second)
		d := ds[len(ds)-1]
		if d["finding"] != content.FindingSpamHold || !strings.Contains(fmt.Sprint(d["detail"]), "AUPGUARD_TEST_HOLD") {
			t.Fatalf("decision %v lacks the finding, score and symbols", d)
		}
	})
}

// listedWorld is the DNS of the listed_url test: a DBL-style list with a
// phishing domain and an error code, a URIBL-style list.
const listedWorld = `
phish.example.dbl.test.    A 127.0.1.4
refused.example.dbl.test.  A 127.255.255.254
black.example.uribl.test.  A 127.0.0.2
`

func TestListedURLThroughPostfix(t *testing.T) {
	fake := fakedns.Start(t, listedWorld)
	cfg := `
log: {format: json}
store: {backend: memory, path: ` + filepath.Join(t.TempDir(), "store") + `}
dns: {servers: ["` + fake.Addr() + `"], timeout: 1s}
chain: [listed_url]
content:
  urls:
    zones: [{zone: dbl.test, kind: dbl}, {zone: uribl.test, kind: uribl}]
    max_lookups: 10
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
`
	env := gwtest.Start(t, gwtest.Options{Config: cfg})
	mk := func(ctype, cte, body string) []byte {
		return []byte("From: a@acme.example\r\nTo: b@mailbox.example\r\nSubject: news\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: " + ctype + "\r\nContent-Transfer-Encoding: " + cte + "\r\n" +
			fmt.Sprintf("Message-ID: <%d@acme.example>\r\n\r\n", time.Now().UnixNano()) + body)
	}
	var many strings.Builder
	for i := range 500 {
		fmt.Fprintf(&many, "https://site%d.example/p\r\n", i)
	}
	cases := []struct {
		name    string
		data    []byte
		refused string // the domain the reply names; "" delivered
	}{
		{"plain-text link to a listed domain is refused", mk("text/plain", "7bit", "Log in: https://login.phish.example/acct\r\n"), "phish.example"},
		{"HTML href to a listed domain is refused", mk("text/html", "7bit", "<a href=\"http://www.phish.example/x\">bank</a>\r\n"), "phish.example"},
		{"quoted-printable link is decoded and refused", mk("text/plain", "quoted-printable", "https://ph=\r\nish.example/=3Fa\r\n"), "phish.example"},
		{"redirect-wrapped listed target is refused", mk("text/plain", "7bit", "https://t.example/?u=https%3A%2F%2Fphish.example%2Flogin\r\n"), "phish.example"},
		{"URIBL black listing is refused", mk("text/plain", "7bit", "http://black.example/\r\n"), "black.example"},
		{"a list's error code does not refuse", mk("text/plain", "7bit", "http://refused.example/\r\n"), ""},
		{"clean links pass", mk("text/plain", "7bit", "https://www.clean.example/ and https://acme.example/\r\n"), ""},
		{"500 links cost at most max_lookups", mk("text/plain", "7bit", many.String()), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env.Sink.Reset()
			before := fake.Total()
			r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.5", From: "a@acme.example", To: []string{"b@mailbox.example"}, Data: c.data})
			if c.refused != "" {
				e := r.EndOfData
				if e == nil || e.Code != 550 || e.EnhancedCode != "5.7.1" || !strings.Contains(e.Text, c.refused) {
					t.Fatalf("want 550 5.7.1 naming %s, got %s", c.refused, r)
				}
				return
			}
			if !r.Delivered() {
				t.Fatalf("refused: %s", r)
			}
			// Each lookup is one LookupIPAddr: an A and an AAAA question.
			if q := fake.Total() - before; q > 2*10 {
				t.Errorf("%d DNS questions for one message, want at most %d (max_lookups 10)", q, 2*10)
			}
		})
	}
}
