package policy

import (
	"context"
	"reflect"
	"testing"

	"github.com/aupguard/aupguard/internal/store/batch"
)

// countingBatch records which checks added work to the stage's batch and
// how often a batch ran.
type countingBatch struct {
	added []string
	execs int
}

// newBatch is the chain's batch factory: a memory batch whose first call
// counts its run.
func (b *countingBatch) newBatch() *Batch {
	nb := (*batch.Runner)(nil).NewBatch()
	nb.Func(func(context.Context) (any, error) { b.execs++; return nil, nil })
	return nb
}

// storeCheck needs the store at EOM: it adds its name to the batch and,
// when it decides, reports whether its work had run.
type storeCheck struct {
	name   string
	action Action
	batch  *countingBatch
}

func (s storeCheck) Name() string { return s.name }

func (s storeCheck) PrepareEOM(_ context.Context, _ *Txn, b *Batch) {
	b.Func(func(context.Context) (any, error) { return nil, nil })
	s.batch.added = append(s.batch.added, s.name)
}

func (s storeCheck) EOM(context.Context, *Txn) ([]Finding, error) {
	if s.batch.execs != 1 {
		return nil, errString("batch not run once before the check decided")
	}
	if s.action == Accept {
		return nil, nil
	}
	return []Finding{{Name: "bad", Action: s.action}}, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// TestChainBatchesStoreWork checks the batching of a stage: the checks
// that need the store add their work once, from the first of them to the
// end of the chain, the batch runs once before they decide, and a stage
// that ends before any of them runs no batch.
func TestChainBatchesStoreWork(t *testing.T) {
	tests := []struct {
		name      string
		steps     func(b *countingBatch) []Step
		wantAdded []string
		wantExecs int
		want      Action
	}{
		{"every store check in one batch", func(b *countingBatch) []Step {
			return []Step{
				{Check: fakeCheck{name: "plain"}, Enabled: true},
				{Check: storeCheck{name: "s1", action: Accept, batch: b}, Enabled: true},
				{Check: fakeCheck{name: "plain2"}, Enabled: true},
				{Check: storeCheck{name: "s2", action: Accept, batch: b}, Enabled: true},
			}
		}, []string{"s1", "s2"}, 1, Accept},
		{"a refusal before any store check: no store work", func(b *countingBatch) []Step {
			return []Step{
				{Check: fakeCheck{name: "plain", findings: []Finding{{Name: "bad", Action: Reject}}}, Enabled: true},
				{Check: storeCheck{name: "s1", action: Accept, batch: b}, Enabled: true},
			}
		}, nil, 0, Reject},
		{"a disabled store check adds nothing", func(b *countingBatch) []Step {
			return []Step{
				{Check: storeCheck{name: "s1", action: Accept, batch: b}, Enabled: false},
				{Check: storeCheck{name: "s2", action: Defer, batch: b}, Enabled: true},
			}
		}, []string{"s2"}, 1, Defer},
		{"a store check refusing: later store work was batched already", func(b *countingBatch) []Step {
			return []Step{
				{Check: storeCheck{name: "s1", action: Defer, batch: b}, Enabled: true},
				{Check: storeCheck{name: "s2", action: Accept, batch: b}, Enabled: true},
			}
		}, []string{"s1", "s2"}, 1, Defer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &countingBatch{}
			c := NewChain(tt.steps(b), WithBatches(b.newBatch))
			v := c.EOM(context.Background(), &Txn{Customer: &Customer{ID: "c"}})
			if v.Action != tt.want || v.Errors != 0 {
				t.Fatalf("verdict %v (errors %d, %+v), want %v", v.Action, v.Errors, v.Results, tt.want)
			}
			if !reflect.DeepEqual(b.added, tt.wantAdded) || b.execs != tt.wantExecs {
				t.Fatalf("added %v, execs %d; want %v, %d", b.added, b.execs, tt.wantAdded, tt.wantExecs)
			}
		})
	}
}
