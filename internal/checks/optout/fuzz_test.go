package optout

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseReport feeds ARF reports (RFC 5965), as mailbox providers send
// them to the complaints address, to the parser: whatever the input, it
// returns a report or an error wrapping ErrMalformedReport, never panics,
// and a report it returns has the one field the gateway relies on.
func FuzzParseReport(f *testing.F) {
	files, _ := filepath.Glob("testdata/arf/*.eml")
	for i, p := range files {
		if i >= 6 {
			break
		}
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n--b--\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseReport(bytes.NewReader(data))
		if err != nil {
			if rep != nil {
				t.Fatalf("report %+v with error %v", rep, err)
			}
			if !errors.Is(err, ErrMalformedReport) {
				t.Fatalf("error %v does not wrap ErrMalformedReport", err)
			}
			return
		}
		if rep.FeedbackType == "" || rep.FeedbackType != strings.ToLower(rep.FeedbackType) {
			t.Fatalf("Feedback-Type %q: want a lower-case value", rep.FeedbackType)
		}
	})
}

// FuzzUnsubscribeToken checks the signed unsubscribe tokens of
// unsubscribe links: a token the gateway made parses back to what it
// says, a token with any one byte changed is refused, and an arbitrary
// string from the endpoint's URL never panics and never verifies.
func FuzzUnsubscribeToken(f *testing.F) {
	f.Add("acme", "bob@example.org", int64(28_000_000), 3, "")
	f.Add("a", "x@y", int64(0), 0, "not-a-token")
	f.Add("customer.with-dots_1", "üñî@example.org", int64(1<<40), 40, "AQ")
	f.Fuzz(func(t *testing.T, customer, rcpt string, minutes int64, flip int, arbitrary string) {
		now := time.Unix(1_700_000_000, 0)
		if _, err := ParseToken(testKey, arbitrary, 0, now); err == nil {
			t.Fatalf("arbitrary string %q verified", arbitrary)
		}
		if minutes < 0 || minutes > 1<<40 || validList(customer) != nil || customer == GlobalList || !strings.Contains(rcpt, "@") {
			return
		}
		issued := time.Unix(minutes*60, 0).UTC()
		tok := NewToken(testKey, customer, rcpt, issued)
		got, err := ParseToken(testKey, tok, 0, now)
		if err != nil {
			t.Fatalf("own token refused: %v", err)
		}
		if got.Customer != customer || got.Recipient != rcpt || !got.Issued.Equal(issued) {
			t.Fatalf("token says %+v, want %s %s %s", got, customer, rcpt, issued)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		if flip < 0 {
			flip = -flip
		}
		raw[flip%len(raw)] ^= 0x20
		if _, err := ParseToken(testKey, base64.RawURLEncoding.EncodeToString(raw), 0, now); err == nil {
			t.Fatalf("token with byte %d changed verified", flip%len(raw))
		}
	})
}
