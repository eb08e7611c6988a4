package reputation

import (
	"fmt"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// postfixRcpts are the recipients of TestRealPostfixLog: as given in RCPT
// TO, and the class the receiver's answer makes of them.
var postfixRcpts = []struct {
	rcpt  string
	class Class
}{
	{`<gone1@example.org>`, HardBounce},
	{`<"gone with spaces"@example.org>`, HardBounce},
	{`<"gone<>angle"@example.org>`, HardBounce},
	{`<"gone\"quote"@example.org>`, HardBounce},
	// A local part that spells a delivery line's fields: in the internal
	// format it reads as a delivery.
	{`<"gone>, relay=none, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (ok"@example.org>`, HardBounce},
	{`<"gone>, orig_to=<x>, relay=none, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (ok"@example.org>`, HardBounce},
	{`<ok1@example.org>`, Sent},
	{`<"ok with spaces"@example.org>`, Sent},
	{`<later@example.org>`, Deferred},
	{`<"policy x"@example.org>`, PolicyBounce},
}

// TestRealPostfixLog sends one message (null sender, <>) to recipients
// with plain and quoted local parts through a private Postfix that relays
// to a receiver refusing some of them, with info_log_address_format
// external (Postfix ≥ 3.5's default) and internal, and reads the
// delivery lines Postfix itself wrote (maillog_file): each recipient's
// result is read once, with the right class, under its Postfix program
// name, and no line reads as a result that did not happen.
func TestRealPostfixLog(t *testing.T) {
	for _, format := range []AddressFormat{External, Internal} {
		t.Run(string(format), func(t *testing.T) {
			sink := testenv.StartSink(t)
			sink.RefuseRcpt(func(to string) *smtp.SMTPError {
				switch {
				case strings.Contains(to, "gone"):
					return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected: User unknown"}
				case strings.Contains(to, "later"):
					return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
				case strings.Contains(to, "policy"):
					return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "refused by policy"}
				}
				return nil
			})
			pf := testenv.StartPostfix(t, testenv.PostfixOptions{RelayTo: sink.Addr(), ExtraMainCF: map[string]string{
				"info_log_address_format": string(format),
				"smtputf8_enable":         "no",
			}})
			qid := sendRaw(t, pf.SMTPAddr())
			// One delivery line per recipient (the deferred one is tried once
			// before the queue's back-off).
			deadline := time.Now().Add(30 * time.Second)
			var got []Delivery
			for {
				got = got[:0]
				for _, line := range strings.Split(pf.Log(), "\n") {
					if d, ok := ParseLineFormat(line, format); ok && d.QueueID == qid {
						got = append(got, d)
					}
				}
				if len(got) >= len(postfixRcpts) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			cfg := DefaultConfig().Deliveries
			counts := map[Class]int{}
			for _, d := range got {
				c, _ := d.Class()
				counts[c]++
				if !cfg.TrustedProgram(d.Program) {
					t.Errorf("program %q of %+v not trusted", d.Program, d)
				}
			}
			want := map[Class]int{}
			for _, r := range postfixRcpts {
				want[r.class]++
			}
			if os.Getenv("AUPG_DUMP") != "" {
				t.Logf("log:\n%s", pf.Log())
			}
			if fmt.Sprint(counts) != fmt.Sprint(want) || len(got) != len(postfixRcpts) {
				t.Errorf("classes %v, want %v; results:\n%s\nlog:\n%s", counts, want, dump(got), pf.Log())
			}
			for _, d := range got {
				if !strings.Contains(d.Relay, "127.0.0.1") {
					t.Errorf("relay %q of %+v", d.Relay, d)
				}
			}
		})
	}
}

func dump(ds []Delivery) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "  %+v\n", d)
	}
	return b.String()
}

// sendRaw sends one message from <> to every recipient of postfixRcpts,
// as written there, and returns its queue id.
func sendRaw(t *testing.T, addr string) string {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := func(code int, format string, args ...any) string {
		t.Helper()
		id, err := c.Cmd(format, args...)
		if err != nil {
			t.Fatal(err)
		}
		c.StartResponse(id)
		defer c.EndResponse(id)
		_, msg, err := c.ReadResponse(code)
		if err != nil {
			t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
		}
		return msg
	}
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	cmd(250, "EHLO client.test")
	cmd(250, "MAIL FROM:<>")
	for _, r := range postfixRcpts {
		cmd(250, "RCPT TO:%s", r.rcpt)
	}
	cmd(354, "DATA")
	msg := cmd(250, "From: <>\r\nTo: undisclosed-recipients:;\r\nSubject: t\r\n\r\nbody\r\n.")
	_, qid, ok := strings.Cut(msg, "queued as ")
	if !ok {
		t.Fatalf("no queue id in %q", msg)
	}
	cmd(221, "QUIT")
	return strings.TrimSpace(qid)
}
