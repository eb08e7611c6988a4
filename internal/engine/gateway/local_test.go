package gateway

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/engine/setup"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
)

// rcptStub refuses recipients whose local part starts with "optedout"
// (reject) or "capped" (defer), and records Finish like stubCheck.
type rcptStub struct{ stubCheck }

func (c *rcptStub) Name() string { return "rcptstub" }
func (c *rcptStub) Rcpt(_ context.Context, _ *policy.Txn, r *policy.Rcpt) ([]policy.Finding, error) {
	switch {
	case strings.HasPrefix(r.Addr.Local, "optedout"):
		return []policy.Finding{{Name: "opted_out", Action: policy.Reject, Reply: policy.MustReply(550, "5.7.1", "Recipient opted out")}}, nil
	case strings.HasPrefix(r.Addr.Local, "capped"):
		return []policy.Finding{{Name: "capped", Action: policy.Defer, Reply: policy.MustReply(450, "4.7.1", "Too much mail to this recipient")}}, nil
	}
	return nil, nil
}

func newLocalEngine(t *testing.T, unattributed string) (*Engine, *bytes.Buffer, *rcptStub) {
	return newLocalEngineDeferrals(t, unattributed, "defer")
}

func newLocalEngineDeferrals(t *testing.T, unattributed, deferrals string) (*Engine, *bytes.Buffer, *rcptStub) {
	t.Helper()
	y := `
provider: {hostnames: [mta1.provider.test]}
local_submission: {sender_binding: postfix, unattributed: ` + unattributed + `, deferrals: ` + deferrals + `}
customers:
  - id: acme
    local_users: [web1]
    networks: [192.0.2.0/24]
    domains: [acme.example]
`
	cfg, err := config.Parse([]byte(y), "t.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := store.Open(cfg.Store, nil)
	chk := &rcptStub{}
	st, err := NewState(&setup.Deps{Config: cfg, Store: h, Secret: secrets.Key("0123456789abcdef")}, policy.NewChain([]policy.Step{{Check: chk, Enabled: true}}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	return NewEngine(st, nil, NewLogger(config.LogConfig{Format: "json", Level: "info"}, &buf)), &buf, chk
}

// localSend runs one message through a session marked local (as the milter
// adapter marks Postfix's non-SMTP connections) and returns the answers to
// MAIL and each RCPT and the end-of-message outcome.
func localSend(e *Engine, local bool, from string, rcpts []string) (Outcome, []Outcome, EOMOutcome) {
	s := e.NewSession()
	s.Connect("localhost", netip.MustParseAddr("127.0.0.1"))
	s.SetLocalSubmission(local)
	ctx := context.Background()
	defer s.Close()
	mail := s.Mail(ctx, from, "", "")
	if mail.Action != policy.Accept {
		return mail, nil, EOMOutcome{}
	}
	var outs []Outcome
	for _, r := range rcpts {
		outs = append(outs, s.Rcpt(ctx, r, ""))
	}
	s.Header("From", " shop@acme.example")
	s.EndOfHeaders()
	s.Body([]byte("hi\r\n"))
	return mail, outs, s.EndOfMessage(ctx, "Q1")
}

func TestLocalSubmissionSession(t *testing.T) {
	t.Run("unattributed defer and reject", func(t *testing.T) {
		for _, tc := range []struct {
			unattributed string
			want         string
		}{{"defer", "451 4.7.1"}, {"reject", "550 5.7.1"}} {
			e, buf, _ := newLocalEngine(t, tc.unattributed)
			mail, _, _ := localSend(e, true, "root@mta1.provider.test", []string{"a@example.net"})
			if !strings.HasPrefix(mail.Reply.String(), tc.want) || !strings.Contains(buf.String(), `"finding":"unattributed_local"`) {
				t.Errorf("%s: MAIL %v %q\n%s", tc.unattributed, mail.Action, mail.Reply, buf)
			}
		}
	})
	t.Run("attributed by sender and by login", func(t *testing.T) {
		e, buf, _ := newLocalEngine(t, "defer")
		for _, from := range []string{"shop@acme.example", "web1@mta1.provider.test"} {
			mail, _, eom := localSend(e, true, from, []string{"a@example.net"})
			if mail.Action != policy.Accept || eom.Action != policy.Accept {
				t.Errorf("%s: MAIL %v EOM %v\n%s", from, mail, eom.Outcome, buf)
			}
		}
		if !strings.Contains(buf.String(), `"by":"local_sender"`) || !strings.Contains(buf.String(), `"by":"local_login"`) {
			t.Errorf("log:\n%s", buf)
		}
	})
	t.Run("deferrals: hold", func(t *testing.T) {
		e, _, chk := newLocalEngineDeferrals(t, "defer", "hold")
		_, outs, eom := localSend(e, true, "shop@acme.example", []string{"b@example.net", "capped@example.net"})
		if outs[1].Action != policy.Accept || eom.Action != policy.Quarantine || !strings.HasPrefix(eom.Hold, "rcptstub/capped (ref ") || len(eom.DelRcpts) != 0 {
			t.Fatalf("RCPT %v, EOM %v hold %q del %q", outs, eom.Action, eom.Hold, eom.DelRcpts)
		}
		if len(chk.finishes) != 1 || !chk.finishes[0] {
			t.Errorf("Finish %v: a held message is counted", chk.finishes)
		}
	})
	t.Run("an SMTP client on loopback is not local", func(t *testing.T) {
		e, _, _ := newLocalEngine(t, "defer")
		mail, _, _ := localSend(e, false, "shop@acme.example", []string{"a@example.net"})
		if mail.Action != policy.Reject || !strings.Contains(mail.Reply.String(), "Relay access denied") {
			t.Errorf("MAIL %v %q", mail.Action, mail.Reply)
		}
	})
	tests := []struct {
		name     string
		local    bool
		rcpts    []string
		wantRcpt []policy.Action
		wantEOM  string // reply prefix, "" for accept
		wantDel  []string
		finished bool
	}{
		{"local: refused recipient removed at end of message", true, []string{"optedout@example.net", "b@example.net"},
			[]policy.Action{policy.Accept, policy.Accept}, "", []string{"optedout@example.net"}, true},
		{"local: a temporary refusal defers the message", true, []string{"b@example.net", "capped@example.net"},
			[]policy.Action{policy.Accept, policy.Accept}, "450 4.7.1", nil, false},
		{"local: every recipient refused rejects it", true, []string{"optedout@example.net", "optedout2@example.net"},
			[]policy.Action{policy.Accept, policy.Accept}, "550 5.7.1", nil, false},
		{"local: unparsable recipient", true, []string{"not an address@", "b@example.net"},
			[]policy.Action{policy.Accept, policy.Accept}, "", []string{"not an address@"}, true},
		{"SMTP: refused at RCPT as usual", false, []string{"optedout@example.net", "b@example.net"},
			[]policy.Action{policy.Reject, policy.Accept}, "", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, buf, chk := newLocalEngine(t, "defer")
			var outs []Outcome
			var eom EOMOutcome
			if tc.local {
				_, outs, eom = localSend(e, true, "shop@acme.example", tc.rcpts)
			} else {
				s := e.NewSession()
				s.Connect("c", netip.MustParseAddr("192.0.2.1"))
				ctx := context.Background()
				s.Mail(ctx, "shop@acme.example", "", "")
				for _, r := range tc.rcpts {
					outs = append(outs, s.Rcpt(ctx, r, ""))
				}
				s.EndOfHeaders()
				eom = s.EndOfMessage(ctx, "Q1")
				s.Close()
			}
			var acts []policy.Action
			for _, o := range outs {
				acts = append(acts, o.Action)
			}
			if !slices.Equal(acts, tc.wantRcpt) {
				t.Errorf("RCPT answers %v, want %v", acts, tc.wantRcpt)
			}
			if tc.wantEOM == "" && eom.Action != policy.Accept || tc.wantEOM != "" && !strings.HasPrefix(eom.Reply.String(), tc.wantEOM) {
				t.Errorf("EOM %v %q, want %q", eom.Action, eom.Reply, tc.wantEOM)
			}
			if !slices.Equal(eom.DelRcpts, tc.wantDel) {
				t.Errorf("DelRcpts %q, want %q", eom.DelRcpts, tc.wantDel)
			}
			chk.mu.Lock()
			fin := slices.Clone(chk.finishes)
			chk.mu.Unlock()
			if len(fin) != 1 || fin[0] != tc.finished {
				t.Errorf("Finish calls %v, want [%v] (counted only when sent)", fin, tc.finished)
			}
			if tc.wantEOM != "" && !strings.Contains(buf.String(), `"stage":"eom"`) {
				t.Errorf("no end-of-message decision:\n%s", buf)
			}
		})
	}
}
