package setup

import (
	"context"
	"testing"
)

type runner struct{ ran chan context.Context }

func (r *runner) Run(ctx context.Context) { r.ran <- ctx }

// TestSharedKeepsObjectsAndRunsRunners: Get makes an object once per key
// (a reload gets the same one back); Runners made before Start run at
// Start, those made after at once, with Start's context.
func TestSharedKeepsObjectsAndRunsRunners(t *testing.T) {
	s := NewShared()
	made := 0
	before := &runner{ran: make(chan context.Context, 1)}
	get := func() any {
		return s.Get("a", func() any { made++; return before })
	}
	if get() != get() || made != 1 {
		t.Fatalf("Get made %d objects for one key", made)
	}
	select {
	case <-before.ran:
		t.Fatal("a runner ran before Start")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	if got := <-before.ran; got != ctx {
		t.Fatal("runner got another context")
	}
	after := &runner{ran: make(chan context.Context, 1)}
	s.Get("b", func() any { return after })
	if got := <-after.ran; got != ctx {
		t.Fatal("runner made after Start got another context")
	}
	s.Start(ctx) // a second Start starts nothing twice
	select {
	case <-before.ran:
		t.Fatal("runner started twice")
	default:
	}
}
