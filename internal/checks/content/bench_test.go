package content

import (
	"context"
	"testing"
)

// BenchmarkContentChecksOff pins what the family costs per message when
// no engine is configured (the default): no body writer, no connection,
// no allocation.
func BenchmarkContentChecksOff(b *testing.B) {
	mw := NewMalware(ClamdConfig{}, sysClock, nil)
	sp := NewSpamScore(DefaultConfig(), sysClock, nil)
	lu, err := NewListedURL(URLsConfig{}, nopResolver{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	tx := txnFor(plainMsg("x"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if mw.Body(tx) != nil || sp.Body(tx) != nil || lu.Body(tx) != nil {
			b.Fatal("a body writer when off")
		}
		mw.StartEOM(ctx, tx)
		lu.StartEOM(ctx, tx)
		sp.StartEOM(ctx, tx)
		_, _ = mw.EOM(ctx, tx)
		_, _ = sp.EOM(ctx, tx)
		_, _ = lu.EOM(ctx, tx)
		mw.Finish(ctx, tx, true)
		sp.Finish(ctx, tx, true)
		lu.Finish(ctx, tx, true)
	}
}

func TestContentChecksOffAllocateNothing(t *testing.T) {
	r := testing.Benchmark(BenchmarkContentChecksOff)
	if a := r.AllocsPerOp(); a != 0 {
		t.Fatalf("%d allocations per message with the content checks off, want 0", a)
	}
}
