package optout

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// stampMessage runs the feedback_stamp check on a message of customer to
// rcpts the way the chain does at end of message (its store work in the
// stage's batch) and returns the X-AUP-Customer value it added.
func stampMessage(t *testing.T, svc *Service, customer string, rcpts ...string) string {
	t.Helper()
	chain := policy.NewChain([]policy.Step{{Check: NewStamper(svc), Enabled: true}},
		policy.WithBatches(func() *policy.Batch { return svc.h.NewBatch() }))
	tx := txn(customer, rcpts...)
	if v := chain.EOM(bg, tx); v.Action.Decisive() || v.Errors > 0 {
		t.Fatalf("stamping: %+v", v)
	}
	for _, h := range tx.AddedHeaders() {
		if h.Name == StampHeader {
			return h.Value
		}
	}
	t.Fatal("no stamp added")
	return ""
}

// arfReport is an ARF report (RFC 5965) from fbl@FROMDOMAIN about a message
// whose header section carried stamp, naming rcpts in Original-Rcpt-To.
func arfReport(fromDomain, stamp string, rcpts ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: fbl@%s\r\nTo: abuse@provider.example\r\nMIME-Version: 1.0\r\n", fromDomain)
	b.WriteString("Content-Type: multipart/report; report-type=feedback-report; boundary=ARF\r\n\r\n")
	b.WriteString("--ARF\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n")
	b.WriteString("--ARF\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: fbl/1\r\nVersion: 1\r\n")
	for _, r := range rcpts {
		fmt.Fprintf(&b, "Original-Rcpt-To: <%s>\r\n", r)
	}
	b.WriteString("\r\n--ARF\r\nContent-Type: text/rfc822-headers\r\n\r\n")
	if stamp != "" {
		b.WriteString(StampHeader + ": " + stamp + "\r\n")
	}
	b.WriteString("From: news@beta.example\r\nSubject: offer\r\n\r\n--ARF--\r\n")
	return b.Bytes()
}

// stuffed returns n chosen addresses (the report of the issue: 1,597).
func stuffed(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("chosen%04d@victims.example", i)
	}
	return out
}

// standing returns beta's complaint count and list size.
func standing(t *testing.T, svc *Service) (int64, int64) {
	t.Helper()
	st, err := svc.Status(bg, "beta")
	if err != nil {
		t.Fatal(err)
	}
	return st.Complaints, st.ListSize
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestComplaintCountsOnlyForTheRecipientWhoComplained, on both backends: every recipient of beta's messages holds a valid
// stamp; forged, duplicated and address-stuffed reports built around it
// change beta's complaint count and suppression list by at most one per
// genuine (message, recipient).
func TestComplaintCountsOnlyForTheRecipientWhoComplained(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			one := stampMessage(t, svc, "beta", "victim@mailbox.example")
			multi := stampMessage(t, svc, "beta", "a@mailbox.example", "B@Mailbox.example", "c@other.example")
			other := stampMessage(t, svc, "beta", "someone@mailbox.example")
			if !strings.Contains(one, "; r=") || strings.Contains(multi, "; r=") {
				t.Fatalf("one-recipient stamp %q should bind its recipient, multi-recipient %q should not", one, multi)
			}
			steps := []struct {
				name      string
				report    []byte
				times     int
				wantErr   error
				refused   string
				counted   bool
				dup       bool
				complaint int64 // beta's complaints after the step
				listed    int64 // beta's list size after the step
			}{
				{name: "genuine complaint of a one-recipient message counts", report: arfReport("isp.example", one, "victim@mailbox.example"),
					times: 1, counted: true, complaint: 1, listed: 1},
				{name: "the same report 50 times counts once", report: arfReport("isp.example", one, "victim@mailbox.example"),
					times: 50, dup: true, complaint: 1, listed: 1},
				{name: "1,597 stuffed Original-Rcpt-To: none taken", report: arfReport("isp.example", one, append(stuffed(1597), "victim@mailbox.example")...),
					times: 1, wantErr: ErrRefused, refused: RefusedSeveral, complaint: 1, listed: 1},
				{name: "a chosen address with the victim's stamp is refused", report: arfReport("isp.example", one, "chosen@victims.example"),
					times: 1, wantErr: ErrRefused, refused: RefusedNotRecipient, complaint: 1, listed: 1},
				{name: "the stamp of another message is refused", report: arfReport("isp.example", other, "victim@mailbox.example"),
					times: 1, wantErr: ErrRefused, refused: RefusedNotRecipient, complaint: 1, listed: 1},
				{name: "a forged stamp names no one", report: arfReport("isp.example", strings.Replace(one, "c=beta", "c=acme", 1), "victim@mailbox.example"),
					times: 1, wantErr: ErrUnattributed, complaint: 1, listed: 1},
				{name: "a stamp with its signature altered names no one", report: arfReport("isp.example", one[:len(one)-2]+"AA", "victim@mailbox.example"),
					times: 1, wantErr: ErrUnattributed, complaint: 1, listed: 1},
				{name: "a recipient of a multi-recipient message counts (canonical form)", report: arfReport("isp.example", multi, "b@mailbox.example"),
					times: 1, counted: true, complaint: 2, listed: 2},
				{name: "and counts once", report: arfReport("isp.example", multi, "B@MAILBOX.EXAMPLE"),
					times: 50, dup: true, complaint: 2, listed: 2},
				{name: "an outsider with a multi-recipient stamp is refused", report: arfReport("isp.example", multi, "chosen@victims.example"),
					times: 1, wantErr: ErrRefused, refused: RefusedNotRecipient, complaint: 2, listed: 2},
				{name: "a multi-recipient stamp stuffed with its own recipients: none taken", report: arfReport("isp.example", multi, "a@mailbox.example", "c@other.example"),
					times: 1, wantErr: ErrRefused, refused: RefusedSeveral, complaint: 2, listed: 2},
				{name: "a version 1 stamp binds no recipient", report: arfReport("isp.example", legacyStamp("beta", t0), "victim2@mailbox.example"),
					times: 1, wantErr: ErrRefused, refused: RefusedUnbound, complaint: 2, listed: 2},
			}
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) {
					for i := 0; i < st.times; i++ {
						res, err := svc.ComplaintFrom(bg, "", bytes.NewReader(st.report))
						if st.wantErr != nil {
							if !errors.Is(err, st.wantErr) || res.Refused != st.refused || res.Counted || res.Added != 0 {
								t.Fatalf("report %d: %+v, %v; want %v (%q)", i, res, err, st.wantErr, st.refused)
							}
							continue
						}
						if err != nil {
							t.Fatalf("report %d: %v", i, err)
						}
						first := i == 0 && !st.dup
						if res.Counted != first || res.Duplicate == first || (res.Added == 1) != first || len(res.RcptHashes) != 1 {
							t.Fatalf("report %d: %+v; want counted only the first time", i, res)
						}
					}
					c, l := standing(t, svc)
					if c != st.complaint || l != st.listed {
						t.Fatalf("beta: %d complaints, %d listed; want %d, %d", c, l, st.complaint, st.listed)
					}
				})
			}
			// Nothing stuffed in ever reached the list.
			for _, a := range []string{"chosen0000@victims.example", "chosen1596@victims.example", "chosen@victims.example", "a@mailbox.example", "c@other.example"} {
				if _, ok, err := svc.Check(bg, "beta", a); err != nil || ok {
					t.Fatalf("%s listed (%v)", a, err)
				}
			}
			for _, a := range []string{"victim@mailbox.example", "b@mailbox.example"} {
				if e, ok, err := svc.Check(bg, "beta", a); err != nil || !ok || e.Source != SourceComplaint {
					t.Fatalf("%s: %+v %v %v; want listed by its complaint", a, e, ok, err)
				}
			}
		})
	}
}

// TestComplaintStampOlderThanRecordTTL: a stamp older than
// optout.complaints.record_ttl is not counted (its dedupe record would be
// gone), on both backends.
func TestComplaintStampOlderThanRecordTTL(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			clk.Set(t0)
			svc := mk(t)
			one := stampMessage(t, svc, "beta", "victim@mailbox.example")
			clk.Advance(DefaultComplaintRecordTTL + time.Minute)
			res, err := svc.Complaint(bg, bytes.NewReader(arfReport("isp.example", one, "victim@mailbox.example")))
			if !errors.Is(err, ErrRefused) || res.Refused != RefusedExpired {
				t.Fatalf("%+v, %v; want refused as expired", res, err)
			}
			if c, l := standing(t, svc); c != 0 || l != 0 {
				t.Fatalf("beta: %d complaints, %d listed", c, l)
			}
		})
	}
}

// TestComplaintReporterCap: a reporter over optout.complaints.reporter_cap
// reports in an hour is refused (and logged once for the episode); another
// reporter is not affected; the next hour starts again. Both backends.
func TestComplaintReporterCap(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			clk.Set(t0)
			svc := mk(t)
			svc.Settings.ReporterCap = 5
			var logs logBuffer
			svc.Log = slog.New(slog.NewTextHandler(&logs, nil))
			var capped int
			for i := 0; i < 60; i++ {
				st := stampMessage(t, svc, "beta", fmt.Sprintf("r%d@mailbox.example", i))
				res, err := svc.Complaint(bg, bytes.NewReader(arfReport("flood.example", st, fmt.Sprintf("r%d@mailbox.example", i))))
				switch {
				case i < 5 && (err != nil || !res.Counted):
					t.Fatalf("report %d under the cap: %+v, %v", i, res, err)
				case i >= 5 && !errors.Is(err, ErrReporterCapped):
					t.Fatalf("report %d over the cap: %+v, %v", i, res, err)
				case err != nil:
					capped++
					if res.Reporter != "from:flood.example" || res.Refused != RefusedCapped {
						t.Fatalf("capped report: %+v", res)
					}
				}
			}
			if capped != 55 {
				t.Fatalf("%d capped, want 55", capped)
			}
			if n := strings.Count(logs.String(), "complaint reporter over its hourly cap"); n != 1 {
				t.Fatalf("cap logged %d times, want once per episode:\n%s", n, logs.String())
			}
			if c, _ := standing(t, svc); c != 5 {
				t.Fatalf("beta: %d complaints, want 5", c)
			}
			// Another reporter (a caller-declared one) is counted apart.
			st := stampMessage(t, svc, "beta", "x@mailbox.example")
			if res, err := svc.ComplaintFrom(bg, "jmrp", bytes.NewReader(arfReport("flood.example", st, "x@mailbox.example"))); err != nil || !res.Counted || res.Reporter != "jmrp" {
				t.Fatalf("other reporter: %+v, %v", res, err)
			}
			// The next hour, the flood's reporter is heard again.
			clk.Advance(time.Hour)
			st = stampMessage(t, svc, "beta", "y@mailbox.example")
			if res, err := svc.Complaint(bg, bytes.NewReader(arfReport("flood.example", st, "y@mailbox.example"))); err != nil || !res.Counted {
				t.Fatalf("next hour: %+v, %v", res, err)
			}
		})
	}
}

// TestComplaintAPIRefusesForgedDuplicatedAndStuffed drives the admin API
// route (POST /api/complaints) on both backends: stuffed and forged
// reports get 422 and record nothing, 50 copies of a genuine one count
// once (200, "duplicate": true after the first), and a reporter over its
// cap gets 429.
func TestComplaintAPIRefusesForgedDuplicatedAndStuffed(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			h, err := NewAPI(APIDeps{Store: svc.h, Config: cfg, Secret: testKey, Clock: svc.Clock})
			if err != nil {
				t.Fatal(err)
			}
			post := func(report []byte, reporter string) (int, string) {
				req := httptest.NewRequest("POST", "/api/complaints?reporter="+reporter, bytes.NewReader(report))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec.Code, rec.Body.String()
			}
			one := stampMessage(t, svc, "beta", "victim@mailbox.example")
			other := stampMessage(t, svc, "beta", "someone@mailbox.example")
			if code, body := post(arfReport("isp.example", one, append(stuffed(1597), "victim@mailbox.example")...), "fbl1"); code != 422 || !strings.Contains(body, "names 1598 recipients") {
				t.Fatalf("stuffed: %d %s", code, body)
			}
			if code, body := post(arfReport("isp.example", other, "victim@mailbox.example"), "fbl1"); code != 422 || !strings.Contains(body, `"refused": "not_recipient"`) {
				t.Fatalf("other message's stamp: %d %s", code, body)
			}
			if code, body := post(arfReport("isp.example", strings.Replace(one, "c=beta", "c=acme", 1), "victim@mailbox.example"), "fbl1"); code != 422 {
				t.Fatalf("forged stamp: %d %s", code, body)
			}
			for i := 0; i < 50; i++ {
				code, body := post(arfReport("isp.example", one, "victim@mailbox.example"), "fbl1")
				if code != 200 || strings.Contains(body, `"duplicate": true`) != (i > 0) {
					t.Fatalf("copy %d: %d %s", i, code, body)
				}
			}
			if c, l := standing(t, svc); c != 1 || l != 1 {
				t.Fatalf("beta: %d complaints, %d listed; want 1, 1", c, l)
			}
			// 53 reports from fbl1 so far; the cap is the default 1000. A
			// reporter over a small cap gets 429.
			svc2, err := NewService(svc.h, cfg, testKey, svc.Clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			svc2.Settings.ReporterCap = 53
			api2 := &api{svc: svc2}
			req := httptest.NewRequest("POST", "/api/complaints?reporter=fbl1", bytes.NewReader(arfReport("isp.example", one, "victim@mailbox.example")))
			rec := httptest.NewRecorder()
			api2.complaint(rec, req)
			if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
				t.Fatalf("over the cap: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

// TestComplaintBindingSurvivesRestart: on the memory backend with a log,
// a multi-recipient message's recipient set and the record of a counted
// complaint survive a restart: the complaint still counts once.
func TestComplaintBindingSurvivesRestart(t *testing.T) {
	cfg := testConfig(t, "")
	dir := t.TempDir()
	open := func() (*Service, *store.Handle) {
		h, err := store.Open(config.StoreConfig{Backend: "memory", Path: dir}, clock.NewFake(t0))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewService(h, cfg, testKey, clock.NewFake(t0), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, h
	}
	svc, _ := open()
	multi := stampMessage(t, svc, "beta", "a@mailbox.example", "b@mailbox.example")
	svc.Backend.(*memory).Close() // a clean stop logs the sets
	svc, _ = open()
	report := arfReport("isp.example", multi, "b@mailbox.example")
	if res, err := svc.Complaint(bg, bytes.NewReader(report)); err != nil || !res.Counted {
		t.Fatalf("after restart: %+v, %v", res, err)
	}
	svc.Backend.(*memory).Close()
	svc, _ = open()
	defer svc.Backend.(*memory).Close()
	if res, err := svc.Complaint(bg, bytes.NewReader(report)); err != nil || !res.Duplicate {
		t.Fatalf("after a second restart: %+v, %v; want a duplicate", res, err)
	}
	if c, l := standing(t, svc); c != 1 || l != 1 {
		t.Fatalf("beta: %d complaints, %d listed", c, l)
	}
}

// TestStamperStoresRecipientSetInTheEOMBatch: a multi-recipient message's
// set is written with the end-of-message batch, no round trip of its own
// (Redis: the batch's one script call), and a dry run writes none.
func TestStamperStoresRecipientSetInTheEOMBatch(t *testing.T) {
	cfg := testConfig(t, "")
	mk := svcKinds(t, cfg, clock.NewFake(t0))["redis"]
	svc := mk(t)
	st := NewStamper(svc)
	tx := txn("beta", "a@mailbox.example", "b@mailbox.example")
	b := svc.h.NewBatch()
	st.PrepareEOM(bg, tx, b)
	if b.Len() != 1 {
		t.Fatalf("batch has %d calls, want the recipient set's one", b.Len())
	}
	if err := b.Exec(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EOM(bg, tx); err != nil {
		t.Fatal(err)
	}
	si, err := VerifyStamp(testKey, tx.AddedHeaders()[0].Value)
	if err != nil || si.RcptTag != "" {
		t.Fatalf("stamp %+v, %v", si, err)
	}
	r := svc.Backend.(*redisBackend)
	v, err := r.h.Client.Get(bg, r.rsetKey("beta", si.Ref)).Result()
	if err != nil || v != recipientBlob([]string{RcptTag(testKey, si.Ref, "a@mailbox.example"), RcptTag(testKey, si.Ref, "b@mailbox.example")}) {
		t.Fatalf("stored set %q, %v", v, err)
	}
	if ttl := r.h.Client.PTTL(bg, r.rsetKey("beta", si.Ref)).Val(); ttl <= 0 || ttl > DefaultComplaintRecordTTL {
		t.Fatalf("set ttl %v", ttl)
	}
	if strings.Contains(v, "mailbox.example") {
		t.Fatal("plain addresses stored")
	}
	dry := txn("beta", "a@mailbox.example", "b@mailbox.example")
	dry.DryRun = true
	b = svc.h.NewBatch()
	st.PrepareEOM(bg, dry, b)
	if b.Len() != 0 {
		t.Fatal("a dry run queued a write")
	}
	// A one-recipient message needs no store work at all.
	b = svc.h.NewBatch()
	st.PrepareEOM(bg, txn("beta", "a@mailbox.example"), b)
	if b.Len() != 0 {
		t.Fatal("a one-recipient message queued a write")
	}
}

// TestComplaintByStampAndByLinkCountOnce: a one-recipient bulk message
// carries the stamp and the gateway's unsubscribe link (both name its
// recipient); a report of it by the stamp and another by the link alone
// (the stamp stripped) count once, in either order. Both backends.
func TestComplaintByStampAndByLinkCountOnce(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			aligned := func(*policy.Txn) (bool, bool) { return true, true }
			send := func(rcpt string) (stamp, link string) {
				chain := policy.NewChain([]policy.Step{
					{Check: NewBulk(svc, aligned), Enabled: true, OnError: policy.Defer},
					{Check: NewStamper(svc), Enabled: true},
					{Check: NewUnsubscriber(svc), Enabled: true},
				}, policy.WithBatches(func() *policy.Batch { return svc.h.NewBatch() }))
				tx := txn("acme", rcpt)
				header(tx, "Precedence", "bulk", "From", "news@acme.example")
				if v := runEOM(chain, tx, strings.Repeat("offer text ", 20)); v.Action.Decisive() {
					t.Fatalf("bulk message refused: %+v", v)
				}
				for _, h := range tx.AddedHeaders() {
					switch h.Name {
					case StampHeader:
						stamp = h.Value
					case "List-Unsubscribe":
						link = h.Value
					}
				}
				if stamp == "" || link == "" {
					t.Fatalf("added %v", tx.AddedHeaders())
				}
				return stamp, link
			}
			report := func(stamp, link, rcpt string) []byte {
				r := arfReport("isp.example", stamp, rcpt)
				return bytes.Replace(r, []byte("From: news@beta.example\r\n"), []byte("From: news@acme.example\r\nList-Unsubscribe: "+link+"\r\n"), 1)
			}
			for i, order := range [][2]bool{{true, false}, {false, true}} {
				rcpt := fmt.Sprintf("reader%d@mailbox.example", i)
				stamp, link := send(rcpt)
				for j, byStamp := range order {
					st := ""
					if byStamp {
						st = stamp
					}
					res, err := svc.Complaint(bg, bytes.NewReader(report(st, link, rcpt)))
					want := "stamp"
					if !byStamp {
						want = "token"
					}
					if err != nil || res.Counted != (j == 0) || res.Duplicate != (j == 1) || res.BoundBy != want {
						t.Fatalf("order %d, report %d (by stamp %v): %+v, %v", i, j, byStamp, res, err)
					}
				}
			}
			st, err := svc.Status(bg, "acme")
			if err != nil || st.Complaints != 2 || st.ListSize != 2 {
				t.Fatalf("acme: %+v, %v; want 2 complaints, 2 listed", st, err)
			}
		})
	}
}

// TestComplaintFeedbackPartTooLarge: a machine-readable part larger than
// 256 KiB is malformed, never read in part (fields past a cut would go
// unseen); nothing is recorded.
func TestComplaintFeedbackPartTooLarge(t *testing.T) {
	cfg := testConfig(t, "")
	svc := svcKinds(t, cfg, clock.NewFake(t0))["memory"](t)
	one := stampMessage(t, svc, "beta", "victim@mailbox.example")
	pad := make([]string, 0, 6000)
	for i := 0; i < 6000; i++ {
		pad = append(pad, fmt.Sprintf("X-Padding-%d: %s", i, strings.Repeat("x", 40)))
	}
	r := arfReport("isp.example", one, "victim@mailbox.example")
	r = bytes.Replace(r, []byte("Version: 1\r\n"), []byte("Version: 1\r\n"+strings.Join(pad, "\r\n")+"\r\n"), 1)
	res, err := svc.Complaint(bg, bytes.NewReader(r))
	if !errors.Is(err, ErrMalformedReport) || !strings.Contains(err.Error(), "larger than 256 KiB") || res.Counted {
		t.Fatalf("%+v, %v", res, err)
	}
	if c, l := standing(t, svc); c != 0 || l != 0 {
		t.Fatalf("beta: %d complaints, %d listed", c, l)
	}
}

// BenchmarkStamperEOM is feedback_stamp's end-of-message cost with its
// store work in the stage's batch: nothing for one recipient, one proc in
// the batch for several.
func BenchmarkStamperEOM(b *testing.B) {
	cfg := testConfig(b, "")
	for _, kind := range []string{"memory", "redis"} {
		for _, n := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/%d_rcpt", kind, n), func(b *testing.B) {
				svc := benchService(b, kind, cfg)
				st := NewStamper(svc)
				var rcpts []string
				for i := 0; i < n; i++ {
					rcpts = append(rcpts, fmt.Sprintf("r%d@example.org", i))
				}
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					tx := txn("beta", rcpts...)
					bt := svc.h.NewBatch()
					st.PrepareEOM(bg, tx, bt)
					if err := bt.Exec(bg); err != nil {
						b.Fatal(err)
					}
					if _, err := st.EOM(bg, tx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestComplaintBindingOnCluster: on a Redis Cluster the recipient set goes
// in the end-of-message batch script (the customer's slot), the complaint
// script touches only the customer's slot, and the reporter's counter
// lives in its own.
func TestComplaintBindingOnCluster(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	cfg := testConfig(t, "")
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second,
		Redis: config.RedisConfig{Addrs: rc.Addrs(), Cluster: true, KeyPrefix: "t:"}}, clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	svc, err := NewService(h, cfg, testKey, clock.NewFake(t0), nil)
	if err != nil {
		t.Fatal(err)
	}
	multi := stampMessage(t, svc, "beta", "a@mailbox.example", "b@mailbox.example")
	for i, want := range []struct {
		rcpt         string
		counted, dup bool
		refused      string
	}{
		{"b@mailbox.example", true, false, ""},
		{"b@mailbox.example", false, true, ""},
		{"chosen@victims.example", false, false, RefusedNotRecipient},
	} {
		res, err := svc.Complaint(bg, bytes.NewReader(arfReport("isp.example", multi, want.rcpt)))
		if res.Counted != want.counted || res.Duplicate != want.dup || res.Refused != want.refused || (err != nil) != (want.refused != "") {
			t.Fatalf("report %d: %+v, %v", i, res, err)
		}
	}
	if c, l := standing(t, svc); c != 1 || l != 1 {
		t.Fatalf("beta: %d complaints, %d listed", c, l)
	}
}

// TestReportedBoundsReporters: the memory backend counts at most
// maxReportersPerHour reporters apart in an hour; further made-up
// reporters share one count, so a flood of them is capped together.
func TestReportedBoundsReporters(t *testing.T) {
	m, err := openMemory("", clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxReportersPerHour; i++ {
		if n, _ := m.Reported(bg, fmt.Sprintf("from:d%d.example", i), t0); n != 1 {
			t.Fatalf("reporter %d counted %d", i, n)
		}
	}
	for i := 0; i < 3; i++ {
		if n, _ := m.Reported(bg, fmt.Sprintf("from:extra%d.example", i), t0); n != int64(i+1) {
			t.Fatalf("extra reporter %d counted %d, want the shared count %d", i, n, i+1)
		}
	}
	if n, _ := m.Reported(bg, "from:d0.example", t0); n != 2 {
		t.Fatalf("a known reporter counted %d, want 2", n)
	}
	if n, _ := m.Reported(bg, "from:extra9.example", t0.Add(time.Hour)); n != 1 || len(m.reports) != 1 {
		t.Fatalf("next hour: %d, %d reporters", n, len(m.reports))
	}
}
