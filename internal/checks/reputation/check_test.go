package reputation

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

const checkYAML = `
reputation:
  bounces:
    min_volume: 20
    warn: 0.05
    act: 0.10
    customers:
      beta: {outcome: defer_all}
      gamma: {outcome: report, act: 0.5}
`

// feed sends n log lines of one class for a customer through the reader.
func feed(t *testing.T, r *Reader, qid string, class string, dsn string, n int, offset int) {
	t.Helper()
	for i := 0; i < n; i++ {
		r.Line(context.Background(), fmt.Sprintf("Nov 29 10:30:00 mta1 postfix/smtp[1]: %s: to=<u%d@example.org>, relay=mx[192.0.2.25]:25, delay=1, delays=0/0/0/1, dsn=%s, status=%s (x)",
			qid, offset+i, dsn, class))
	}
}

func TestBounceRateCheck(t *testing.T) {
	clk := clock.NewFake(t0)
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := backends()[0].open(t, clk)
	svc := newTestService(t, h, testConfig(t, checkYAML), clk, log)
	rd := NewReader(svc)
	chk := NewCheck(svc)
	ctx := context.Background()
	txn := func(customer string, bulk bool) *policy.Txn {
		tx := &policy.Txn{Customer: &policy.Customer{ID: customer}, QueueID: "Q" + customer + fmt.Sprint(time.Now().UnixNano())}
		if bulk {
			tx.Headers = []policy.Header{{Name: "Precedence", Value: " bulk"}}
		}
		return tx
	}
	eom := func(customer string, bulk bool) []policy.Finding {
		t.Helper()
		fs, err := chk.EOM(ctx, txn(customer, bulk))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	// Every customer has a message accepted (queue id remembered).
	for _, c := range []string{"acme", "beta", "gamma"} {
		tx := txn(c, false)
		tx.QueueID = "QID" + c
		chk.Finish(ctx, tx, true)
	}
	chk.Finish(ctx, &policy.Txn{Customer: &policy.Customer{ID: "acme"}, QueueID: "QIDREFUSED"}, false)

	t.Run("below the minimum volume nothing is judged", func(t *testing.T) {
		feed(t, rd, "QIDacme", "bounced", "5.1.1", 5, 0)
		if fs := eom("acme", true); len(fs) != 0 {
			t.Fatalf("findings at low volume: %+v", fs)
		}
	})
	t.Run("policy refusals and deferrals are not hard bounces", func(t *testing.T) {
		feed(t, rd, "QIDacme", "bounced", "5.7.1", 5, 100)
		feed(t, rd, "QIDacme", "deferred", "4.1.1", 5, 200)
		feed(t, rd, "QIDacme", "sent", "2.0.0", 40, 300)
		st, _ := svc.Standing(ctx, "acme")
		if st.Hard != 5 || st.Policy != 5 || st.Deferred != 5 || st.Sent != 40 || st.Level != LevelWarn || st.Rate != 0.1 {
			t.Fatalf("standing %+v (5 hard of 50 final: 10%%)", st)
		}
	})
	t.Run("over warn, not above act: a warning, mail goes", func(t *testing.T) {
		fs := eom("acme", true)
		if len(fs) != 1 || fs[0].Name != FindingWarn || fs[0].Action != policy.Accept {
			t.Fatalf("findings %+v", fs)
		}
	})
	t.Run("over act, defer_bulk: bulk deferred, other mail accepted", func(t *testing.T) {
		feed(t, rd, "QIDacme", "bounced", "5.1.10", 1, 500)
		fs := eom("acme", true)
		if len(fs) != 1 || fs[0].Name != FindingHigh || fs[0].Action != policy.Defer || fs[0].Reply != ReplyBulkSuspended {
			t.Fatalf("bulk: %+v", fs)
		}
		if !strings.Contains(fs[0].Detail, "above act 10.00%") || fs[0].Attrs["bulk"] != "true" {
			t.Errorf("detail %q attrs %v", fs[0].Detail, fs[0].Attrs)
		}
		fs = eom("acme", false)
		if len(fs) != 1 || fs[0].Name != FindingHigh || fs[0].Action != policy.Accept {
			t.Fatalf("not bulk: %+v", fs)
		}
		if r := ReplyBulkSuspended; r.Code() != 451 || r.Enhanced() != "4.7.1" {
			t.Errorf("reply %v", r)
		}
	})
	t.Run("defer_all and report per customer", func(t *testing.T) {
		feed(t, rd, "QIDbeta", "sent", "2.0.0", 15, 0)
		feed(t, rd, "QIDbeta", "bounced", "5.1.1", 5, 100)
		if fs := eom("beta", false); len(fs) != 1 || fs[0].Action != policy.Defer || fs[0].Reply != ReplyAllSuspended {
			t.Fatalf("beta: %+v", fs)
		}
		feed(t, rd, "QIDgamma", "sent", "2.0.0", 10, 0)
		feed(t, rd, "QIDgamma", "bounced", "5.1.1", 10, 100)
		fs := eom("gamma", true)
		if len(fs) != 1 || fs[0].Name != FindingWarn {
			t.Fatalf("gamma (act 50%%, rate 50%%: warn only): %+v", fs)
		}
		feed(t, rd, "QIDgamma", "bounced", "5.1.1", 1, 200)
		fs = eom("gamma", true)
		if len(fs) != 1 || fs[0].Name != FindingHigh || fs[0].Action != policy.Accept {
			t.Fatalf("gamma (report only): %+v", fs)
		}
	})
	t.Run("results of refused or foreign messages are not counted", func(t *testing.T) {
		before := rd.Stats.Unmatched.Load()
		feed(t, rd, "QIDREFUSED", "bounced", "5.1.1", 3, 0)
		if rd.Stats.Unmatched.Load() != before+3 {
			t.Errorf("unmatched %d, want %d", rd.Stats.Unmatched.Load(), before+3)
		}
	})
	t.Run("the window: old results fall out", func(t *testing.T) {
		clk.Advance(25 * time.Hour)
		if fs := eom("acme", true); len(fs) != 0 {
			t.Fatalf("findings after the window: %+v", fs)
		}
	})
	out := logs.String()
	for _, want := range []string{`"event":"delivery"`, `"class":"hard"`, `"event":"bounce_rate_level"`, `"to":"act"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "u1@example.org") {
		t.Error("a recipient was logged in plain text")
	}
}
