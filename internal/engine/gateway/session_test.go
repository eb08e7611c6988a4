package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// stubCheck flags a From header containing "forged" and records Finish.
type stubCheck struct {
	mu       sync.Mutex
	finishes []bool
}

func (c *stubCheck) Name() string { return "stub" }
func (c *stubCheck) EOM(_ context.Context, t *policy.Txn) ([]policy.Finding, error) {
	for _, v := range t.HeaderValues("From") {
		if strings.Contains(v, "forged") {
			return []policy.Finding{{Name: "forged_from", Detail: "From " + v, Action: policy.Reject}}, nil
		}
	}
	return nil, nil
}
func (c *stubCheck) Finish(_ context.Context, _ *policy.Txn, accepted bool) {
	c.mu.Lock()
	c.finishes = append(c.finishes, accepted)
	c.mu.Unlock()
}

const sessionConfig = `
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
  - id: trial
    networks: [198.51.100.0/24]
    domains: [trial.example]
    mode: monitor
`

func newTestEngine(t *testing.T, chk *stubCheck) (*Engine, *bytes.Buffer, *State) {
	t.Helper()
	cfg, err := config.Parse([]byte(sessionConfig), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := store.Open(cfg.Store, nil)
	st, err := NewState(&setup.Deps{Config: cfg, Store: h, Secret: secrets.Key("0123456789abcdef")}, policy.NewChain([]policy.Step{{Check: chk, Enabled: true}}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	return NewEngine(st, nil, NewLogger(config.LogConfig{Format: "json", Level: "info"}, &buf)), &buf, st
}

func sendOne(e *Engine, client, from string, rcpts []string) EOMOutcome {
	s := e.NewSession()
	s.Connect("c", netip.MustParseAddr(client))
	ctx := context.Background()
	if o := s.Mail(ctx, "x@acme.example", "", ""); o.Action != policy.Accept {
		return EOMOutcome{Outcome: o}
	}
	for _, r := range rcpts {
		s.Rcpt(ctx, r, "")
	}
	s.Header("From", " "+from)
	s.EndOfHeaders()
	s.Body([]byte("hi\r\n"))
	out := s.EndOfMessage(ctx, "Q1")
	s.Close()
	return out
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == "decision" {
			out = append(out, m)
		}
	}
	return out
}

func TestOneLogLinePerDecision(t *testing.T) {
	chk := &stubCheck{}
	e, buf, _ := newTestEngine(t, chk)
	tests := []struct {
		name, client, from string
		action, effective  string
		code               float64
	}{
		{"accept", "192.0.2.1", "<a@acme.example>", "accept", "accept", 0},
		{"reject", "192.0.2.1", "<forged@bank.example>", "reject", "reject", 550},
		{"monitor would-be reject", "198.51.100.1", "<forged@bank.example>", "reject", "accept", 550},
		{"unidentified", "203.0.113.1", "<a@acme.example>", "reject", "reject", 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			sendOne(e, tt.client, tt.from, []string{"alice@example.org", "bob@example.org"})
			lines := logLines(t, buf)
			if len(lines) != 1 {
				t.Fatalf("%d decision lines: %s", len(lines), buf)
			}
			d := lines[0]
			for _, k := range []string{"queue_id", "customer", "check", "finding", "action", "code", "enhanced", "ref", "mode"} {
				if _, ok := d[k]; !ok {
					t.Errorf("key %s missing: %v", k, d)
				}
			}
			if d["action"] != tt.action || d["effective"] != tt.effective || d["code"] != tt.code {
				t.Fatalf("got %v", d)
			}
			if strings.Contains(buf.String(), "alice@example.org") {
				t.Fatal("recipient address logged in plain text")
			}
		})
	}
}

func TestRefusalReplyCarriesRef(t *testing.T) {
	e, buf, _ := newTestEngine(t, &stubCheck{})
	out := sendOne(e, "192.0.2.1", "<forged@bank.example>", []string{"alice@example.org"})
	if out.Action != policy.Reject || out.Reply.Code() != 550 || out.Reply.Enhanced() != "5.7.1" {
		t.Fatalf("got %+v", out)
	}
	ref := logLines(t, buf)[0]["ref"].(string)
	if !strings.Contains(out.Reply.Text(), "(ref "+ref+")") {
		t.Fatalf("reply %q lacks ref %s", out.Reply, ref)
	}
}

func TestFinishSeesOutcome(t *testing.T) {
	chk := &stubCheck{}
	e, _, _ := newTestEngine(t, chk)
	sendOne(e, "192.0.2.1", "<a@acme.example>", []string{"a@example.org"})
	sendOne(e, "192.0.2.1", "<forged@x.example>", []string{"a@example.org"})
	sendOne(e, "198.51.100.1", "<forged@x.example>", []string{"a@example.org"}) // monitor: delivered
	// An aborted transaction (RSET after RCPT).
	s := e.NewSession()
	s.Connect("c", netip.MustParseAddr("192.0.2.1"))
	s.Mail(context.Background(), "x@acme.example", "", "")
	s.Rcpt(context.Background(), "a@example.org", "")
	s.Abort(context.Background())
	want := []bool{true, false, true, false}
	if len(chk.finishes) != len(want) {
		t.Fatalf("finishes %v", chk.finishes)
	}
	for i := range want {
		if chk.finishes[i] != want[i] {
			t.Fatalf("finishes %v, want %v", chk.finishes, want)
		}
	}
}

// TestReloadKeepsStateUntilTransactionEnds: a transaction under way at a
// reload finishes on the State (chain) it started with; the next one uses
// the new State.
func TestReloadKeepsStateUntilTransactionEnds(t *testing.T) {
	old := &stubCheck{}
	e, _, _ := newTestEngine(t, old)
	s := e.NewSession()
	s.Connect("c", netip.MustParseAddr("192.0.2.1"))
	s.Mail(context.Background(), "x@acme.example", "", "")
	s.Rcpt(context.Background(), "a@example.org", "")
	fresh := &stubCheck{}
	_, _, st2 := newTestEngine(t, fresh)
	e.Swap(st2)
	s.Header("From", " <forged@bank.example>")
	out := s.EndOfMessage(context.Background(), "Q")
	if out.Action != policy.Reject {
		t.Fatalf("transaction did not finish on its own state: %+v", out)
	}
	if len(old.finishes) != 1 || len(fresh.finishes) != 0 {
		t.Fatalf("finishes: old %v, new %v; want the old chain only", old.finishes, fresh.finishes)
	}
	if o := sendOne(e, "192.0.2.1", "<a@acme.example>", []string{"b@example.org"}); o.Action != policy.Accept {
		t.Fatalf("next message: %+v", o)
	}
	if len(fresh.finishes) != 1 || len(old.finishes) != 1 {
		t.Fatalf("finishes after the reload: old %v, new %v; want the new chain only", old.finishes, fresh.finishes)
	}
}

func TestExplainIsDryRun(t *testing.T) {
	chk := &stubCheck{}
	_, _, st := newTestEngine(t, chk)
	res, err := Explain(context.Background(), st, ExplainInput{Customer: "acme", Rcpts: []string{"a@example.org"},
		Message: strings.NewReader("From: <forged@bank.example>\nTo: a@example.org\nSubject: hi\n\nbody\n")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != "reject" || res.Code != 550 || res.Enhanced != "5.7.1" || len(res.Checks) != 1 || res.Checks[0].Finding != "forged_from" {
		t.Fatalf("explain: %+v", res)
	}
	if len(chk.finishes) != 1 || chk.finishes[0] {
		t.Fatalf("explain committed: %v", chk.finishes)
	}
}

func TestReadHeadersKeepsRawValues(t *testing.T) {
	hdrs, body, err := ReadHeaders(strings.NewReader("Subject:  two spaces\r\nX-Long: a\r\n\tb\r\nFrom: x@y\r\n\r\nbody"))
	if err != nil {
		t.Fatal(err)
	}
	if len(hdrs) != 3 || hdrs[0].Value != "  two spaces" || hdrs[1].Value != " a\r\n\tb" {
		t.Fatalf("%q", hdrs)
	}
	var b bytes.Buffer
	b.ReadFrom(body)
	if b.String() != "body" {
		t.Fatalf("body %q", b.String())
	}
}
