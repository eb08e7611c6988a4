package clock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

func TestWithDeadline(t *testing.T) {
	base := time.Now().Add(time.Hour) // far enough that nothing expires during the test
	tests := []struct {
		name     string
		parent   time.Duration // parent's deadline after base; <0: none
		bound    time.Duration // asked deadline after base
		want     time.Duration // effective deadline after base
		newChild bool          // a context of its own is made
	}{
		{"parent without deadline", -1, 5 * time.Second, 5 * time.Second, true},
		{"parent ends later: bound applies", 10 * time.Second, 5 * time.Second, 5 * time.Second, true},
		{"parent ends sooner: parent as is", 2 * time.Second, 5 * time.Second, 2 * time.Second, false},
		{"parent ends at the same instant: parent as is", 5 * time.Second, 5 * time.Second, 5 * time.Second, false},
		{"parent ends a nanosecond later: bound applies", 5*time.Second + 1, 5 * time.Second, 5 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := context.Background()
			if tt.parent >= 0 {
				var cancel context.CancelFunc
				parent, cancel = context.WithDeadline(parent, base.Add(tt.parent))
				defer cancel()
			}
			ctx, cancel := clock.WithDeadline(parent, base.Add(tt.bound))
			// The reference: what the standard library gives.
			ref, refCancel := context.WithDeadline(parent, base.Add(tt.bound))
			defer refCancel()
			got, ok := ctx.Deadline()
			want, refOK := ref.Deadline()
			if !ok || !refOK || !got.Equal(want) || !got.Equal(base.Add(tt.want)) {
				t.Fatalf("deadline %v (%v), standard library %v (%v), want %v", got, ok, want, refOK, base.Add(tt.want))
			}
			if (ctx != parent) != tt.newChild {
				t.Fatalf("own context made = %v, want %v", ctx != parent, tt.newChild)
			}
			cancel()
			if tt.newChild && !errors.Is(ctx.Err(), context.Canceled) {
				t.Fatalf("own context not cancelled by its cancel func: %v", ctx.Err())
			}
			if parent.Err() != nil {
				t.Fatalf("cancel reached the parent: %v", parent.Err())
			}
		})
	}
}

func TestWithTimeout(t *testing.T) {
	tests := []struct {
		name     string
		parent   time.Duration // parent's timeout; 0: none
		d        time.Duration
		newChild bool
	}{
		{"no parent deadline", 0, time.Minute, true},
		{"parent ends later", time.Hour, time.Minute, true},
		{"parent ends sooner", time.Minute, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := context.Background()
			if tt.parent > 0 {
				var cancel context.CancelFunc
				parent, cancel = context.WithTimeout(parent, tt.parent)
				defer cancel()
			}
			before := time.Now()
			ctx, cancel := clock.WithTimeout(parent, tt.d)
			after := time.Now()
			defer cancel()
			if (ctx != parent) != tt.newChild {
				t.Fatalf("own context made = %v, want %v", ctx != parent, tt.newChild)
			}
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatal("no deadline")
			}
			// The effective deadline is the earlier of the parent's and
			// now+d, now being some instant between before and after.
			lo, hi := before.Add(tt.d), after.Add(tt.d)
			if pdl, ok := parent.Deadline(); ok && pdl.Before(lo) {
				lo, hi = pdl, pdl
			}
			if dl.Before(lo) || dl.After(hi) {
				t.Fatalf("deadline %v not within [%v, %v]", dl, lo, hi)
			}
		})
	}
}

func TestWithTimeoutEndedParent(t *testing.T) {
	tests := []struct {
		name   string
		parent func() (context.Context, context.CancelFunc)
	}{
		{"cancelled, no deadline", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}},
		{"deadline passed", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, cancel := tt.parent()
			defer cancel()
			ctx, c2 := clock.WithTimeout(parent, time.Hour)
			defer c2()
			if ctx.Err() == nil {
				t.Fatal("child of an ended context not ended")
			}
		})
	}
}

// BenchmarkWithTimeout is a bound inside a sooner one (a store batch inside
// a stage that ends first): the standard library makes a context and
// registers it with its parent, WithTimeout does neither.
func BenchmarkWithTimeout(b *testing.B) {
	parent, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, bc := range []struct {
		name string
		fn   func(context.Context, time.Duration) (context.Context, context.CancelFunc)
	}{
		{"context.WithTimeout", context.WithTimeout},
		{"clock.WithTimeout", clock.WithTimeout},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, c := bc.fn(parent, 2*time.Hour)
				c()
			}
		})
	}
}
