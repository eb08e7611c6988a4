package reputation

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// TestQueueIDFirstWriterWins pins that a second transaction claiming a
// queue id another customer holds (a forged milter transaction re-labelling
// a message) changes nothing: the first customer keeps the message and its
// bounces; the clash is logged and counted. Through the end-of-message
// batch (the path every message takes) and through Finish, on each backend.
func TestQueueIDFirstWriterWins(t *testing.T) {
	for _, b := range backends()[:2] {
		t.Run(b.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			var logs bytes.Buffer
			h := b.open(t, clk)
			svc := newTestService(t, h, testConfig(t, checkYAML), clk, slog.New(slog.NewJSONHandler(&logs, nil)))
			chk := NewCheck(svc)
			rd := NewReader(svc)
			ctx := context.Background()
			eom := func(customer, qid string) {
				t.Helper()
				tx := &policy.Txn{Customer: &policy.Customer{ID: customer}, QueueID: qid}
				sb := h.NewBatch()
				chk.PrepareEOM(ctx, tx, sb)
				if err := sb.Exec(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := chk.EOM(ctx, tx); err != nil {
					t.Fatal(err)
				}
				chk.Finish(ctx, tx, true)
			}
			eom("acme", "QFIRST1")
			t.Run("a second customer's claim at end of message keeps the first", func(t *testing.T) {
				eom("beta", "QFIRST1")
				if n := svc.Clashes(); n != 1 {
					t.Fatalf("clashes %d, want 1", n)
				}
				if !strings.Contains(logs.String(), `"event":"queue_id_clash","queue_id":"QFIRST1","holder":"acme","claimed_by":"beta"`) {
					t.Fatalf("log:\n%s", logs.String())
				}
			})
			t.Run("a second claim through Finish (no batch) keeps the first", func(t *testing.T) {
				chk.Finish(ctx, &policy.Txn{Customer: &policy.Customer{ID: "gamma"}, QueueID: "QFIRST1"}, true)
				if n := svc.Clashes(); n != 2 {
					t.Fatalf("clashes %d, want 2", n)
				}
			})
			t.Run("every service on the store sees the count (the check's, rebuilt at reload, and the exporting loop's)", func(t *testing.T) {
				other := newTestService(t, h, testConfig(t, checkYAML), clk, nil)
				if other.Clashes() != 2 {
					t.Fatalf("other service: %d clashes, want 2", other.Clashes())
				}
			})
			t.Run("the same customer again is no clash", func(t *testing.T) {
				eom("acme", "QFIRST1")
				if n := svc.Clashes(); n != 2 {
					t.Fatalf("clashes %d, want 2", n)
				}
			})
			t.Run("the message's bounce counts for the first customer only", func(t *testing.T) {
				feed(t, rd, "QFIRST1", "bounced", "5.1.1", 1, 0)
				a, _ := svc.Standing(ctx, "acme")
				bs, _ := svc.Standing(ctx, "beta")
				g, _ := svc.Standing(ctx, "gamma")
				if a.Hard != 1 || bs.Final() != 0 || g.Final() != 0 {
					t.Fatalf("acme %+v beta %+v gamma %+v", a.Counts, bs.Counts, g.Counts)
				}
			})
			if b.name == "redis" {
				t.Run("the claim is one command in the stage's pipeline", func(t *testing.T) {
					tx := &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: "QFIRST2"}
					sb := h.NewBatch()
					chk.PrepareEOM(ctx, tx, sb)
					if sb.Len() != 2 { // the totals script call and the claim
						t.Fatalf("%d calls in the batch, want 2", sb.Len())
					}
				})
			}
		})
	}
}
