package e2e

import (
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/testkit/gwtest"
)

// slowClient speaks SMTP to addr from 127.0.0.5 and sleeps pause before
// each command after the greeting, as a slow or congested client does. It
// returns the reply to each command, "CMD -> CODE TEXT", and stops at the
// first refusal.
func slowClient(t *testing.T, addr string, pause time.Duration, from, to string, data []byte) []string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	var out []string
	step := func(want int, format string, args ...any) bool {
		time.Sleep(pause)
		cmd := fmt.Sprintf(format, args...)
		if err := tp.PrintfLine("%s", cmd); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		code, msg, err := tp.ReadResponse(want)
		out = append(out, fmt.Sprintf("%s -> %d %s", strings.Fields(cmd)[0], code, msg))
		return err == nil
	}
	if !step(250, "EHLO slow.client.test") || !step(250, "MAIL FROM:<%s>", from) || !step(250, "RCPT TO:<%s>", to) || !step(354, "DATA") {
		return out
	}
	w := tp.DotWriter()
	w.Write(data)
	w.Close()
	code, msg, _ := tp.ReadResponse(250)
	out = append(out, fmt.Sprintf("END -> %d %s", code, msg))
	tp.PrintfLine("QUIT")
	return out
}

// TestSlowClientThroughPostfix: a client that pauses between SMTP commands
// within what Postfix allows (smtpd_timeout, scaled down to 4s here) keeps
// its milter session with the default read_timeout and gets its mail
// through. Postfix sends no milter event for EHLO until MAIL FROM (seen
// here), so the milter connection idles across several client pauses: the
// 1.5s pauses before EHLO and MAIL make a 3s silence. The second case is the
// failure the long default prevents: a read_timeout shorter than that
// silence cuts the milter connection and Postfix answers the client with
// milter_default_action (451 4.7.1).
func TestSlowClientThroughPostfix(t *testing.T) {
	const pause = 1500 * time.Millisecond
	tests := []struct {
		name      string
		milter    string // the config's milter settings
		delivered bool
	}{
		{"the default read_timeout keeps the session", "{}", true},
		{"a read_timeout shorter than the silence cuts it", "{read_timeout: 1s}", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := gwtest.Start(t, gwtest.Options{
				Config:      fmt.Sprintf("milter: %s\nchain: [sender_identity]\ncustomers:\n  - id: webhost\n    networks: [127.0.0.5/32]\n    domains: [webhost.example]\n", tc.milter),
				ExtraMainCF: map[string]string{"smtpd_timeout": "4s"},
			})
			env.Sink.Reset()
			replies := slowClient(t, env.Postfix.SMTPAddr(), pause, "app@webhost.example", "bob@example.org",
				msg("app@webhost.example", "bob@example.org", "slow client"))
			last := replies[len(replies)-1]
			if tc.delivered {
				if !strings.HasPrefix(last, "END -> 250") {
					t.Fatalf("slow client's mail not accepted: %v", replies)
				}
				if _, err := env.Sink.WaitFor(1, 20*time.Second); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.HasPrefix(last, "END -> 250") || !strings.Contains(last, "451 4.7.1") {
				t.Fatalf("want the session cut with 451 4.7.1, got %v", replies)
			}
		})
	}
}
