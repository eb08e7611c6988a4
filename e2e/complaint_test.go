package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// arfNaming is an ARF report about a delivered message (its header
// section as delivered) whose Original-Rcpt-To names rcpts.
func arfNaming(data []byte, rcpts ...string) []byte {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	var b strings.Builder
	b.WriteString("From: fbl@isp.example\r\nTo: abuse@provider.example\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=ARF\r\n\r\n" +
		"--ARF\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--ARF\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n")
	for _, r := range rcpts {
		b.WriteString("Original-Rcpt-To: <" + r + ">\r\n")
	}
	b.WriteString("\r\n--ARF\r\nContent-Type: text/rfc822-headers\r\n\r\n")
	b.Write(head)
	b.WriteString("\r\n\r\n--ARF--\r\n")
	return []byte(b.String())
}

// TestComplaintsThroughPostfix, through real Postfix and
// the running gateway's admin API, on the memory store and on Redis: beta
// sends a one-recipient and a three-recipient message; every recipient
// holds the stamp as delivered. Forged, duplicated (x50) and
// address-stuffed (1,597 Original-Rcpt-To) reports built around them
// change beta's complaints and suppression list by one per genuine
// (message, recipient) only.
func TestComplaintsThroughPostfix(t *testing.T) {
	stores := map[string]func(t *testing.T, dir string) string{
		"memory": func(t *testing.T, dir string) string { return fmt.Sprintf("{backend: memory, path: %q}", dir) },
		"redis": func(t *testing.T, dir string) string {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			return fmt.Sprintf("{backend: redis, path: %q, redis: {addrs: [%q]}}", dir, r.Addr())
		},
	}
	for name, storeCfg := range stores {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tokenFile := filepath.Join(dir, "token")
			const token = "complaint-admin-token-0123456789"
			os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
			cfg := `
log: {format: json}
store: ` + storeCfg(t, dir) + `
admin: {token_file: ` + fmt.Sprintf("%q", tokenFile) + `}
chain: [sender_identity, optout_suppression, feedback_stamp]
customers:
  - id: acme
    networks: [127.0.0.5/32]
    domains: [acme.example]
  - id: beta
    networks: [127.0.0.6/32]
    domains: [beta.example]
`
			env := gwtest.Start(t, gwtest.Options{Config: cfg})
			base := "http://" + env.Daemon.ServiceAddr("admin").String()
			call := func(method, path string, body []byte) (int, string) {
				req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "message/rfc822")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			standing := func() (int64, int64) {
				code, body := call("GET", "/api/customers/beta/flag", nil)
				var st optout.CustomerStatus
				if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
					t.Fatalf("standing: %d %s", code, body)
				}
				return st.Complaints, st.ListSize
			}
			send := func(to ...string) []byte {
				env.Sink.Reset()
				data := fmt.Sprintf("From: News <news@beta.example>\r\nTo: %s\r\nSubject: beta news\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@beta.example>\r\n\r\nHello from beta.\r\n",
					strings.Join(to, ", "), time.Now().UnixNano())
				r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.6", From: "news@beta.example", To: to, Data: []byte(data)})
				if !r.Delivered() {
					t.Fatalf("not delivered: %s", r)
				}
				got, err := env.Sink.WaitFor(1, 20*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if st := rawHeaders(got[0].Data, optout.StampHeader); len(st) != 1 {
					t.Fatalf("stamps %q", st)
				}
				return got[0].Data
			}
			one := send("victim@mailbox.example")
			multi := send("a@mailbox.example", "b@mailbox.example", "c@other.example")
			stuffed := []string{"victim@mailbox.example"}
			for i := 0; i < 1597; i++ {
				stuffed = append(stuffed, fmt.Sprintf("chosen%04d@victims.example", i))
			}
			forged := bytes.Replace(one, []byte("c=beta"), []byte("c=acme"), 1)
			for _, st := range []struct {
				name     string
				report   []byte
				times    int
				code     int
				bodyHas  string
				c, listN int64
			}{
				{"genuine complaint counts", arfNaming(one, "victim@mailbox.example"), 1, 200, `"counted": true`, 1, 1},
				{"50 copies count once", arfNaming(one, "victim@mailbox.example"), 50, 200, `"duplicate": true`, 1, 1},
				{"1,597 stuffed addresses: none taken", arfNaming(one, stuffed...), 1, 422, "names 1598 recipients", 1, 1},
				{"a chosen address with the victim's stamp", arfNaming(one, "chosen@victims.example"), 1, 422, "not_recipient", 1, 1},
				// The forged stamp does not verify; the gateway's Feedback-ID still
				// names beta, but binds no message or recipient.
				{"a forged stamp", arfNaming(forged, "victim@mailbox.example"), 1, 422, `"refused": "unbound"`, 1, 1},
				{"a recipient of the three-recipient message counts", arfNaming(multi, "b@mailbox.example"), 1, 200, `"bound_by": "recipient_set"`, 2, 2},
				{"and 50 copies count once", arfNaming(multi, "b@mailbox.example"), 50, 200, `"duplicate": true`, 2, 2},
				{"an outsider with the three-recipient stamp", arfNaming(multi, "chosen@victims.example"), 1, 422, "not_recipient", 2, 2},
				{"a second genuine recipient of it counts", arfNaming(multi, "c@other.example"), 1, 200, `"counted": true`, 3, 3},
			} {
				t.Run(st.name, func(t *testing.T) {
					for i := 0; i < st.times; i++ {
						code, body := call("POST", "/api/complaints?reporter=isp-fbl", st.report)
						if code != st.code || (i == st.times-1 && !strings.Contains(body, st.bodyHas)) {
							t.Fatalf("report %d: %d %.600s; want %d with %q", i, code, body, st.code, st.bodyHas)
						}
					}
					if c, n := standing(); c != st.c || n != st.listN {
						t.Fatalf("beta: %d complaints, %d listed; want %d, %d", c, n, st.c, st.listN)
					}
				})
			}
			if code, body := call("GET", "/api/optouts?list=beta&address=chosen0000@victims.example", nil); code != 200 || !strings.Contains(body, `"suppressed": false`) {
				t.Fatalf("a stuffed address: %d %s", code, body)
			}
			code, m := call("GET", "/metrics", nil)
			if code != 200 || !strings.Contains(m, `aupguard_complaints_refused_total{reason="several_recipients"} 1`) ||
				!strings.Contains(m, `aupguard_complaints_refused_total{reason="not_recipient"} 2`) ||
				!strings.Contains(m, `aupguard_complaints_refused_total{reason="unbound"} 1`) {
				t.Fatalf("refused complaints not in the metrics: %d\n%s", code, grepLines(m, "complaints"))
			}
		})
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
