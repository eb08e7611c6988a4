package policy

import "testing"

type scan struct{ n int }

// sink keeps a transaction on the heap, as the gateway's are.
var sink *Txn

// TestStateIsTypedPerKeyAndPerTxn: a State gives back what was set, of its
// own type, for its own transaction only; two keys of one type do not mix;
// Clear forgets; an unset key (or a transaction with no state at all) says
// so through ok.
func TestStateIsTypedPerKeyAndPerTxn(t *testing.T) {
	a, b := NewState[*scan](), NewState[*scan]()
	by := NewState[string]()
	t1, t2 := &Txn{}, &Txn{}
	if v, ok := a.Get(t1); ok || v != nil {
		t.Fatalf("unset state read as %v, %v", v, ok)
	}
	s := &scan{n: 1}
	a.Set(t1, s)
	by.Set(t1, "precedence")
	tests := []struct {
		name   string
		get    func() (any, bool)
		want   any
		wantOK bool
	}{
		{"set key", func() (any, bool) { return a.Get(t1) }, s, true},
		{"other key of the same type", func() (any, bool) { v, ok := b.Get(t1); return v, ok }, (*scan)(nil), false},
		{"other transaction", func() (any, bool) { v, ok := a.Get(t2); return v, ok }, (*scan)(nil), false},
		{"string key", func() (any, bool) { return by.Get(t1) }, "precedence", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := tt.get()
			if v != tt.want || ok != tt.wantOK {
				t.Fatalf("got %v, %v; want %v, %v", v, ok, tt.want, tt.wantOK)
			}
		})
	}
	a.Clear(t1)
	if _, ok := a.Get(t1); ok {
		t.Fatal("cleared state still read")
	}
	if v, ok := by.Get(t1); !ok || v != "precedence" {
		t.Fatalf("Clear of one key cleared another: %q, %v", v, ok)
	}
	b.Clear(t2) // clearing in a transaction without state is a no-op
}

// TestStateCostsOneAllocationPerTxn: a transaction's slots are made once,
// at its first Set; reads, later Sets of pointers and a transaction that
// keeps no state allocate nothing.
func TestStateCostsOneAllocationPerTxn(t *testing.T) {
	a, b := NewState[*scan](), NewState[*scan]()
	s := &scan{}
	if n := testing.AllocsPerRun(100, func() {
		var tx Txn
		_, _ = a.Get(&tx)
		a.Clear(&tx)
	}); n != 0 {
		t.Fatalf("a transaction without state allocated %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		tx := new(Txn)
		a.Set(tx, s)
		b.Set(tx, s)
		_, _ = a.Get(tx)
		_, _ = b.Get(tx)
		sink = tx
	}); n != 2 { // the Txn and its slots
		t.Fatalf("a transaction with two states allocated %v times, want 2 (Txn and slots)", n)
	}
}

// TestOutputNamesItsProducers: an output is a State that says which checks
// set it, for the readers' Spec.Needs.
func TestOutputNamesItsProducers(t *testing.T) {
	o := NewOutput[string]("bulk_mail")
	if p := o.Producers(); len(p) != 1 || p[0] != "bulk_mail" {
		t.Fatalf("Producers() = %v", p)
	}
	tx := &Txn{}
	o.Set(tx, "list_id")
	if v, ok := o.Get(tx); !ok || v != "list_id" {
		t.Fatalf("Get = %q, %v", v, ok)
	}
}
