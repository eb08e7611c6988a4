package optout

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/clock"
)

// TestARFGolden runs the sample reports in testdata/arf (written after RFC
// 5965 and the formats of large mailbox providers' feedback loops) through
// parsing and attribution.
func TestARFGolden(t *testing.T) {
	cfg := testConfig(t, "")
	// Attribution needs no store.
	s, err := SettingsFromConfig(cfg, testKey)
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Settings: s, Config: cfg, Clock: clock.NewFake(t0)}
	tests := []struct {
		file       string
		customer   string
		customerBy string
		rcpts      []string
		rcptBy     string
		ftype      string
		wantErr    error
		errText    string
	}{
		{file: "yahoo_full.eml", customer: "acme", customerBy: "stamp", rcpts: []string{"jane.doe@yahoo.example"}, rcptBy: "original_rcpt_to", ftype: "abuse"},
		{file: "microsoft_redacted.eml", customer: "beta", customerBy: "stamp", rcpts: []string{"some.one@outlook.example"}, rcptBy: "to_header", ftype: "abuse"},
		{file: "headers_only_token.eml", customer: "acme", customerBy: "token", rcpts: []string{"bob@example.net"}, rcptBy: "token", ftype: "fraud"},
		// Two recipients named: a complaint is one recipient's, none is taken.
		{file: "feedback_id_only.eml", wantErr: ErrRefused, errText: "names 2 recipients"},
		// A forged stamp and a sender domain: nothing the gateway wrote.
		{file: "forged_stamp_sender_domain.eml", wantErr: ErrUnattributed, errText: "cannot be attributed"},
		{file: "not_spam.eml", customer: "acme", customerBy: "stamp", rcpts: []string{"frank@isp.example"}, rcptBy: "original_rcpt_to", ftype: "not-spam"},
		{file: "bad_not_report.eml", wantErr: ErrMalformedReport, errText: "want multipart/report"},
		{file: "bad_no_feedback_part.eml", wantErr: ErrMalformedReport, errText: "no message/feedback-report part"},
		{file: "bad_no_feedback_type.eml", wantErr: ErrMalformedReport, errText: "no Feedback-Type"},
		{file: "bad_delivery_status.eml", wantErr: ErrMalformedReport, errText: "report-type is \"delivery-status\""},
		{file: "unattributed.eml", wantErr: ErrUnattributed, errText: "cannot be attributed"},
		// A Feedback-ID a client wrote (no gateway tag) names no customer.
		{file: "forged_feedback_id.eml", wantErr: ErrUnattributed, errText: "cannot be attributed"},
		{file: "redacted_no_rcpt.eml", wantErr: ErrMalformedReport, errText: "no recipient"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rep, err := ParseReport(bytes.NewReader(fixture(t, "arf/"+tt.file)))
			var res ComplaintResult
			var b *Binding
			if err == nil {
				res, b, err = svc.Attribute(rep)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v; want %v containing %q", err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			rcpts := []string{b.Recipient}
			if res.Customer != tt.customer || res.CustomerBy != tt.customerBy || res.RcptBy != tt.rcptBy || res.FeedbackType != tt.ftype || !reflect.DeepEqual(rcpts, tt.rcpts) {
				t.Fatalf("got customer %q by %s, rcpts %v by %s, type %s; want %q by %s, %v by %s, %s",
					res.Customer, res.CustomerBy, rcpts, res.RcptBy, res.FeedbackType, tt.customer, tt.customerBy, tt.rcpts, tt.rcptBy, tt.ftype)
			}
		})
	}
}

func TestComplaintIngestAndMbox(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			var mbox bytes.Buffer
			for _, f := range []string{"yahoo_full.eml", "headers_only_token.eml", "not_spam.eml"} {
				mbox.WriteString("From MAILER-DAEMON Sat Mar  1 12:00:00 2025\n")
				mbox.Write(fixture(t, "arf/"+f))
				mbox.WriteString("\n")
			}
			var results []ComplaintResult
			err := SplitMbox(&mbox, func(msg []byte) error {
				r, err := svc.Complaint(bg, bytes.NewReader(msg))
				results = append(results, r)
				return err
			})
			if err != nil || len(results) != 3 {
				t.Fatalf("mbox: %d results, %v", len(results), err)
			}
			if results[0].Added != 1 || !results[0].Counted || results[1].Added != 1 || !results[1].Counted || results[2].Counted || results[2].Added != 0 {
				t.Fatalf("results = %+v", results)
			}
			e, ok, err := svc.Check(bg, "acme", "jane.doe@yahoo.example")
			if err != nil || !ok || e.Source != SourceComplaint {
				t.Fatalf("complained recipient: %+v %v %v", e, ok, err)
			}
			if _, ok, _ := svc.Check(bg, "acme", "frank@isp.example"); ok {
				t.Fatal("not-spam report suppressed its recipient")
			}
			st, err := svc.Status(bg, "acme")
			if err != nil || st.Complaints != 2 || st.ListSize != 2 {
				t.Fatalf("acme status = %+v, %v", st, err)
			}
		})
	}
}

func TestSplitMboxQuoting(t *testing.T) {
	in := "From a@b Sat Mar  1 00:00:00 2025\nSubject: one\n\n>From the start\nbody\n\nFrom c@d Sat Mar  1 00:00:00 2025\nSubject: two\n\nx\n"
	var got []string
	if err := SplitMbox(strings.NewReader(in), func(m []byte) error { got = append(got, string(m)); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"Subject: one\n\nFrom the start\nbody", "Subject: two\n\nx"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
