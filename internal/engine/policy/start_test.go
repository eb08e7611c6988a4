package policy

import (
	"context"
	"reflect"
	"testing"

	"github.com/aupguard/aupguard/internal/store/batch"
)

// startLog records, in order, what happened during one EOM stage.
type startLog struct{ events []string }

// newBatch is the chain's batch factory: a memory batch that logs its run.
func (l *startLog) newBatch() *Batch {
	b := (*batch.Runner)(nil).NewBatch()
	b.Func(func(context.Context) (any, error) {
		l.events = append(l.events, "batch")
		return nil, nil
	})
	return b
}

// starterCheck starts work at the beginning of the stage and decides at
// its turn; it panics in StartEOM when told to.
type starterCheck struct {
	name   string
	log    *startLog
	action Action
	panics bool
}

func (s starterCheck) Name() string { return s.name }

func (s starterCheck) StartEOM(context.Context, *Txn) {
	if s.panics {
		panic("start boom")
	}
	s.log.events = append(s.log.events, "start "+s.name)
}

func (s starterCheck) EOM(context.Context, *Txn) ([]Finding, error) {
	s.log.events = append(s.log.events, "eom "+s.name)
	if s.action == Accept {
		return nil, nil
	}
	return []Finding{{Name: "found", Action: s.action}}, nil
}

// loggedStore is a check with store work that logs when it decides.
type loggedStore struct{ log *startLog }

func (loggedStore) Name() string                             { return "store" }
func (loggedStore) PrepareEOM(context.Context, *Txn, *Batch) {}
func (s loggedStore) EOM(context.Context, *Txn) ([]Finding, error) {
	s.log.events = append(s.log.events, "eom store")
	return nil, nil
}

// TestChainStartsEOMWorkFirst: every enabled EOMStarter starts before any
// check decides and before the store batch runs, wherever it sits in the
// chain; a disabled one (provider-wide or by the customer's override) is
// not started; the checks still decide in chain order, the first refusal
// wins; a starter that panics is counted and still decides at its turn.
func TestChainStartsEOMWorkFirst(t *testing.T) {
	off, on := false, true
	tests := []struct {
		name  string
		steps func(l *startLog) []Step
		cust  *Customer
		want  []string
		check string
	}{
		{"starters start before the batch and any decision", func(l *startLog) []Step {
			return []Step{
				{Check: starterCheck{name: "a", log: l}, Enabled: true},
				{Check: loggedStore{log: l}, Enabled: true},
				{Check: starterCheck{name: "b", log: l, action: Reject}, Enabled: true},
				{Check: starterCheck{name: "c", log: l, action: Reject}, Enabled: true},
			}
		}, &Customer{ID: "x"}, []string{"start a", "start b", "start c", "eom a", "batch", "eom store", "eom b"}, "b"},
		{"disabled starters are not started", func(l *startLog) []Step {
			return []Step{
				{Check: loggedStore{log: l}, Enabled: true},
				{Check: starterCheck{name: "a", log: l}, Enabled: false},
				{Check: starterCheck{name: "b", log: l}, Enabled: true},
				{Check: starterCheck{name: "c", log: l}, Enabled: false},
			}
		}, &Customer{ID: "x", Overrides: map[string]CustomerOverride{"b": {Enabled: &off}, "c": {Enabled: &on}}},
			[]string{"start c", "batch", "eom store", "eom c"}, ""},
		{"a starter that panics still decides at its turn", func(l *startLog) []Step {
			return []Step{
				{Check: starterCheck{name: "a", log: l, panics: true, action: Reject}, Enabled: true},
				{Check: starterCheck{name: "b", log: l}, Enabled: true},
			}
		}, &Customer{ID: "x"}, []string{"start b", "eom a"}, "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &startLog{}
			c := NewChain(tc.steps(l), WithBatches(l.newBatch))
			v := c.EOM(context.Background(), &Txn{Customer: tc.cust})
			if !reflect.DeepEqual(l.events, tc.want) {
				t.Fatalf("events %q, want %q", l.events, tc.want)
			}
			if v.Check != tc.check {
				t.Fatalf("decided by %q, want %q", v.Check, tc.check)
			}
		})
	}
}
