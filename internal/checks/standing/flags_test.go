package standing

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/content"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// TestContentFindingsThatCount: only content findings at hold or above
// count towards the flag.
func TestContentFindingsThatCount(t *testing.T) {
	cases := []struct {
		name    string
		r       policy.Result
		counted bool
	}{
		{"malware found", policy.Result{Check: content.MalwareCheck, Finding: policy.Finding{Name: content.FindingMalware}, Action: policy.Reject}, true},
		{"malware not scanned", policy.Result{Check: content.MalwareCheck, Finding: policy.Finding{Name: content.FindingNotScanned}, Action: policy.Quarantine}, false},
		{"listed link", policy.Result{Check: content.ListedCheck, Finding: policy.Finding{Name: content.FindingListedURL}, Action: policy.Reject}, true},
		{"listed link set to accept", policy.Result{Check: content.ListedCheck, Finding: policy.Finding{Name: content.FindingListedURL}, Action: policy.Accept}, false},
		{"spam held", policy.Result{Check: content.SpamCheck, Finding: policy.Finding{Name: content.FindingSpamHold}, Action: policy.Quarantine}, true},
		{"rspamd down", policy.Result{Check: content.SpamCheck, Finding: policy.Finding{Name: policy.FindingError}, Action: policy.Defer}, false},
		{"another check", policy.Result{Check: "dmarc", Finding: policy.Finding{Name: "dmarc_reject"}, Action: policy.Reject}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := contentFinding(tc.r); got != tc.counted {
				t.Fatalf("counted %v, want %v", got, tc.counted)
			}
		})
	}
}

// TestFlagRaisedOnceAndNotifiedOnce: the third finding within the window
// raises one stop (hold, samples), the postmaster is told once, further
// findings change nothing; decisions that are not EOM content findings
// are not counted; a finding older than the window does not count.
func TestFlagRaisedOnceAndNotifiedOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clock.NewFake(time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC))
	b, _ := newMemoryBackend(nil)
	c := DefaultConfig()
	f := NewFlags(b, NewView(b, clk, DefaultRefresh, nil), c, clk, nil)
	var mu sync.Mutex
	var notices []Notice
	f.SetNotify(func(n Notice) { mu.Lock(); notices = append(notices, n); mu.Unlock() })
	go f.Run(ctx)
	phish := []policy.Result{{Check: content.ListedCheck, Finding: policy.Finding{Name: content.FindingListedURL}, Action: policy.Reject}}
	observe := func(d *decision.Decision, handled uint64) {
		t.Helper()
		f.Observe(d)
		deadline := time.Now().Add(5 * time.Second)
		for f.done.Load() < handled {
			if time.Now().After(deadline) {
				t.Fatalf("%d jobs handled, want %d", f.done.Load(), handled)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Not counted at all: no job.
	f.Observe(&decision.Decision{Stage: decision.StageMail, Customer: "acme", Ref: "M", Results: phish})
	f.Observe(&decision.Decision{Stage: decision.StageEOM, Customer: "", Ref: "U", Results: phish})
	f.Observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Ref: "C"})
	observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Ref: "OLD", Results: phish}, 1)
	clk.Advance(2 * time.Hour)
	observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Ref: "R1", Results: phish}, 2)
	observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Ref: "R2", Results: phish}, 3)
	if l, _ := b.List(ctx); len(l) != 0 {
		t.Fatalf("flagged at 2 findings in the window (one older): %+v", l)
	}
	observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Ref: "R3", Results: phish}, 4)
	observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Ref: "R4", Results: phish}, 5)
	l, _ := b.List(ctx)
	if len(l) != 1 || l[0].Source != SourceContent || l[0].Action != ActionHold || len(l[0].Samples) != 3 || l[0].Samples[2] != "R3" {
		t.Fatalf("stops %+v: want one content hold with samples R1 R2 R3", l)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 1 || notices[0].Customer != "acme" || notices[0].Count != 3 {
		t.Fatalf("notices %+v, want one for acme at 3", notices)
	}
	body := noticeBody(notices[0])
	for _, want := range []string{"R1 R2 R3", "postsuper -H QUEUEID", "aupguard resume customer acme"} {
		if !strings.Contains(body, want) {
			t.Fatalf("notice body lacks %q:\n%s", want, body)
		}
	}
}

// TestLoginFlaggedBeforeItsCustomer: findings of one login flag that
// login at the threshold, not its customer; the customer is flagged when
// its logins together reach customer_threshold.
func TestLoginFlaggedBeforeItsCustomer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clock.NewFake(time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC))
	b, _ := newMemoryBackend(nil)
	c := DefaultConfig()
	c.Content.CustomerThreshold = 5
	f := NewFlags(b, NewView(b, clk, DefaultRefresh, nil), c, clk, nil)
	var mu sync.Mutex
	var notices []Notice
	f.SetNotify(func(n Notice) { mu.Lock(); notices = append(notices, n); mu.Unlock() })
	go f.Run(ctx)
	spam := []policy.Result{{Check: content.SpamCheck, Finding: policy.Finding{Name: content.FindingSpamReject}, Action: policy.Reject}}
	n := uint64(0)
	send := func(login, ref string) {
		t.Helper()
		n++
		f.Observe(&decision.Decision{Stage: decision.StageEOM, Customer: "acme", Login: login, Ref: ref, Results: spam})
		deadline := time.Now().Add(5 * time.Second)
		for f.done.Load() < n {
			if time.Now().After(deadline) {
				t.Fatal("job not handled")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 3 {
		send("web@acme.example", "A"+string(rune('0'+i)))
	}
	l, _ := b.List(ctx)
	if len(l) != 1 || l[0].Scope != ScopeLogin || l[0].ID != "web@acme.example" {
		t.Fatalf("after 3 findings of one login: %+v, want that login flagged only", l)
	}
	send("shop@acme.example", "B0")
	send("shop@acme.example", "B1")
	l, _ = b.List(ctx)
	if len(l) != 2 || l[0].Key() != "customer:acme" || l[0].Action != ActionHold {
		t.Fatalf("after 5 findings of the customer's logins: %+v, want the customer flagged too", l)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 2 || notices[0].Stop.Scope != ScopeLogin || !strings.Contains(noticeSubject(notices[0]), "login web@acme.example of customer acme") {
		t.Fatalf("notices %+v", notices)
	}
}
