package policy

import "sync/atomic"

// slotCount is how many slots (State and Output keys) the program has
// declared; a transaction's slot array is made this long at its first Set.
// Keys are package-level variables, so the count is final before the first
// message.
var slotCount atomic.Int32

// newSlot returns the next slot index.
func newSlot() int { return int(slotCount.Add(1)) - 1 }

// State is a typed place in a transaction for one check's own per-message
// state (a scan in flight, the store work it prepared). Declare one per
// kind of state as an unexported package-level variable; no other family
// can name it.
type State[T any] struct{ slot int }

// NewState declares a per-message state of type T.
func NewState[T any]() *State[T] { return &State[T]{slot: newSlot()} }

// Get returns the state set in t; ok is false when none was set (or it
// was cleared).
func (s *State[T]) Get(t *Txn) (v T, ok bool) {
	if s.slot < len(t.slots) {
		v, ok = t.slots[s.slot].(T)
	}
	return v, ok
}

// Set stores v in t.
func (s *State[T]) Set(t *Txn, v T) { t.set(s.slot, v) }

// Clear forgets the state set in t.
func (s *State[T]) Clear(t *Txn) {
	if s.slot < len(t.slots) {
		t.slots[s.slot] = nil
	}
}

// Output is a typed per-message result that checks set for the checks
// after them in the chain: the producing family declares it (exported)
// with the names of the checks that set it, and a check that reads it
// declares the producer of the part it reads in its Spec.Needs, which the
// configuration and the chain builder hold to (CheckChain: the producer is
// in the chain, before the reader).
type Output[T any] struct {
	State[T]
	producers []string
}

// NewOutput declares a result of type T set by the checks called
// producers (several when each fills its part of T).
func NewOutput[T any](producers ...string) *Output[T] {
	return &Output[T]{State: State[T]{slot: newSlot()}, producers: producers}
}

// Producers are the names of the checks that set the result: a reader
// lists the one whose part it reads in its Spec.Needs.
func (r *Output[T]) Producers() []string { return r.producers }

// set stores v in slot i, making the slot array at the first Set (one
// allocation per transaction that keeps any state at all).
func (t *Txn) set(i int, v any) {
	if i >= len(t.slots) {
		n := max(int(slotCount.Load()), i+1)
		s := make([]any, n)
		copy(s, t.slots)
		t.slots = s
	}
	t.slots[i] = v
}
