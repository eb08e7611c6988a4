package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestNewReplyClass(t *testing.T) {
	tests := []struct {
		code    int
		enh     string
		text    string
		wantErr string
	}{
		{451, "4.7.1", "later", ""},
		{550, "5.7.1", "no", ""},
		{550, "5.7.26", "dmarc", ""},
		{550, "4.7.1", "x", "class of code and enhanced code differ"},
		{451, "5.7.1", "x", "class of code and enhanced code differ"},
		{250, "2.0.0", "ok", "must be 4xx or 5xx"},
		{550, "5.7", "x", "class.subject.detail"},
		{550, "5.x.1", "x", "not a number"},
		{550, "5.7.1", "bad\r\ntext", "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.enh+"/"+tt.wantErr, func(t *testing.T) {
			r, err := NewReply(tt.code, tt.enh, tt.text)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewReply: %v", err)
				}
				if r.Code() != tt.code || r.Enhanced() != tt.enh || r.Text() != tt.text {
					t.Fatalf("got %v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestReplyForKeepsClass(t *testing.T) {
	dmarc := MustReply(550, "5.7.26", "DMARC policy of example.com")
	tests := []struct {
		name      string
		action    Action
		suggested Reply
		want      string
	}{
		{"reject keeps 5xx", Reject, dmarc, "550 5.7.26 DMARC policy of example.com"},
		{"defer turns 5xx into 4xx", Defer, dmarc, "451 4.7.26 DMARC policy of example.com"},
		{"reject turns 4xx into 5xx", Reject, ReplyPolicyDefer, "550 5.7.1 Message deferred by policy, try again later"},
		{"generic reject", Reject, Reply{}, ReplyPolicyReject.String()},
		{"generic defer", Defer, Reply{}, ReplyPolicyDefer.String()},
		{"accept has no reply", Accept, dmarc, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReplyFor(tt.action, tt.suggested).String(); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
		})
	}
}

// fakeCheck returns fixed findings at EOM.
type fakeCheck struct {
	name     string
	findings []Finding
	err      error
	panics   bool
	calls    *int
}

func (f fakeCheck) Name() string { return f.name }
func (f fakeCheck) EOM(context.Context, *Txn) ([]Finding, error) {
	if f.calls != nil {
		*f.calls++
	}
	if f.panics {
		panic("boom")
	}
	return f.findings, f.err
}

func act(a Action) *Action { return &a }

func TestChainPrecedenceAndOrder(t *testing.T) {
	rej := Finding{Name: "bad", Action: Reject}
	def := Finding{Name: "slow", Action: Defer, Reply: MustReply(451, "4.7.1", "rate")}
	cust := &Customer{ID: "c"}
	monitor := &Customer{ID: "m", Mode: Monitor}
	override := &Customer{ID: "o", Overrides: map[string]CustomerOverride{"a": {Findings: map[string]Action{"bad": Accept}}}}
	disabled := &Customer{ID: "d", Overrides: map[string]CustomerOverride{"a": {Enabled: new(bool)}}}
	tests := []struct {
		name      string
		steps     []Step
		cust      *Customer
		want      Action
		wantCheck string
		wantCode  int
		wantRes   int
	}{
		{"first decisive wins", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true}, {Check: fakeCheck{name: "b", findings: []Finding{def}}, Enabled: true}}, cust, Reject, "a", 550, 1},
		{"order decides", []Step{{Check: fakeCheck{name: "b", findings: []Finding{def}}, Enabled: true}, {Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true}}, cust, Defer, "b", 451, 1},
		{"monitor runs all", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true}, {Check: fakeCheck{name: "b", findings: []Finding{def}}, Enabled: true}}, monitor, Reject, "a", 550, 2},
		{"step action override", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true, Action: act(Defer)}}, cust, Defer, "a", 451, 1},
		{"finding override", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true, Findings: map[string]Action{"bad": Ignore}}}, cust, Accept, "", 0, 0},
		{"customer override wins", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true, Action: act(Reject)}}, override, Accept, "", 0, 1},
		{"customer disables", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: true}}, disabled, Accept, "", 0, 0},
		{"disabled step", []Step{{Check: fakeCheck{name: "a", findings: []Finding{rej}}, Enabled: false}}, cust, Accept, "", 0, 0},
		{"error defers", []Step{{Check: fakeCheck{name: "a", err: errors.New("redis down")}, Enabled: true, OnError: Defer}}, cust, Defer, "a", 451, 1},
		{"error accept", []Step{{Check: fakeCheck{name: "a", err: errors.New("redis down")}, Enabled: true, OnError: Accept}}, cust, Accept, "", 0, 1},
		{"panic is an error", []Step{{Check: fakeCheck{name: "a", panics: true}, Enabled: true, OnError: Defer}}, cust, Defer, "a", 451, 1},
		{"error reply kept", []Step{{Check: fakeCheck{name: "a", err: ErrorWithReply(errors.New("dns"), ReplyDirectoryFailure)}, Enabled: true, OnError: Defer}}, cust, Defer, "a", 451, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewChain(tt.steps).EOM(context.Background(), &Txn{Customer: tt.cust})
			if v.Action != tt.want || v.Check != tt.wantCheck || v.Reply.Code() != tt.wantCode || len(v.Results) != tt.wantRes {
				t.Fatalf("verdict %+v; want %v by %q code %d with %d results", v, tt.want, tt.wantCheck, tt.wantCode, len(tt.steps))
			}
			if tt.cust.Mode == Monitor && v.Effective() != Accept {
				t.Fatalf("monitor mode effective %v", v.Effective())
			}
		})
	}
}

func TestQuarantineLetsLaterChecksRun(t *testing.T) {
	calls := 0
	hold := fakeCheck{name: "a", findings: []Finding{{Name: "hold", Action: Quarantine}}}
	tests := []struct {
		name  string
		later fakeCheck
		want  Action
		check string
	}{
		{"later signer still runs", fakeCheck{name: "sign", calls: &calls}, Quarantine, "a"},
		{"later reject overrides the hold", fakeCheck{name: "b", findings: []Finding{{Name: "bad", Action: Reject}}}, Reject, "b"},
		{"later quarantine keeps the first reason", fakeCheck{name: "b", findings: []Finding{{Name: "hold2", Action: Quarantine}}}, Quarantine, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = 0
			v := NewChain([]Step{{Check: hold, Enabled: true}, {Check: tt.later, Enabled: true}}).EOM(context.Background(), &Txn{Customer: &Customer{ID: "c"}})
			if v.Action != tt.want || v.Check != tt.check {
				t.Fatalf("got %v by %s", v.Action, v.Check)
			}
			if tt.later.calls != nil && calls != 1 {
				t.Fatalf("check after a quarantine ran %d times", calls)
			}
		})
	}
}

func TestChainStopsAfterDecisive(t *testing.T) {
	calls := 0
	c := NewChain([]Step{
		{Check: fakeCheck{name: "a", findings: []Finding{{Name: "x", Action: Reject}}}, Enabled: true},
		{Check: fakeCheck{name: "b", calls: &calls}, Enabled: true},
	})
	c.EOM(context.Background(), &Txn{Customer: &Customer{ID: "c"}})
	if calls != 0 {
		t.Fatalf("check after the decisive one ran %d times", calls)
	}
}

func TestActionParse(t *testing.T) {
	for _, s := range []string{"accept", "defer", "reject", "quarantine", "ignore"} {
		a, err := ParseAction(s)
		if err != nil || a.String() != s {
			t.Fatalf("%s: %v %v", s, a, err)
		}
	}
	if _, err := ParseAction("drop"); err == nil {
		t.Fatal("drop accepted")
	}
}
