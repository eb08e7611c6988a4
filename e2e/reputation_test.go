package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// The egress address of the test MTA and its DNSBL query name.
const (
	repEgress   = "192.0.2.10"
	repListedRR = "10.2.0.192.zen.spamhaus.org. 1 A 127.0.0.2\n"
	// A listing of another address the zone answers with an error code.
	repErrRR = "11.2.0.192.zen.spamhaus.org. 1 A 127.255.255.254\n"
)

func repMsg(from, to string, i int, bulk bool) []byte {
	h := ""
	if bulk {
		h = "Precedence: bulk\r\nList-Unsubscribe: <https://bulkco.example/u/1>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	}
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: news %d\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d.%d@bulkco.example>\r\n%s\r\nHello.\r\n", from, to, i, time.Now().UnixNano(), i, h))
}

// TestReputationThroughPostfix runs both loops in serve: Postfix relays to
// a sink that refuses unknown users with 550 5.1.1, the gateway follows
// Postfix's log (maillog_file), the customer's bounce rate moves and
// crosses act, and its next bulk message is deferred; then the fake DNSBL
// lists the egress address and the postmaster gets one mail naming the
// customer, and the metrics and the admin API show both.
func TestReputationThroughPostfix(t *testing.T) { reputationE2E(t, "") }

// TestReputationThroughPostfixRedis is the same with the Redis store.
func TestReputationThroughPostfixRedis(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	reputationE2E(t, fmt.Sprintf("store: {backend: redis, redis: {addrs: [%q]}}\n", r.Addr()))
}

func reputationE2E(t *testing.T, storeYAML string) {
	dns := fakedns.Start(t, repErrRR)
	reports := testenv.StartSink(t)
	logDir, err := os.MkdirTemp("", "aupg-rep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(logDir) })
	if err := os.Chmod(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	maillog := filepath.Join(logDir, "maillog")
	tokenFile := filepath.Join(t.TempDir(), "token")
	const token = "rep-admin-token-0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := storeYAML + fmt.Sprintf(`
log: {format: json, level: debug}
chain: [bulk_mail, bounce_rate]
checks:
  bulk_mail: {action: accept}
dns: {servers: [%q], max_ttl: 1s, negative_ttl: 1s}
admin: {token_file: %q}
provider:
  postmaster: postmaster@provider.example
  egress_ips: [%s, 192.0.2.11]
reports:
  smtp: {host: 127.0.0.1, port: %s, tls: none, from: aupguard@provider.example}
customers:
  - id: bulkco
    name: Bulk Co
    networks: [127.0.0.31/32]
    domains: [bulkco.example]
  - id: quiet
    networks: [127.0.0.32/32]
    domains: [quiet.example]
reputation:
  deliveries:
    source: %q
    from_start: true
    poll: 50ms
    egress: %s
  bounces:
    window: 1h
    min_volume: 10
    warn: 0.05
    act: 0.10
    outcome: defer_bulk
  dnsbl:
    zones: [{zone: zen.spamhaus.org}]
    interval: 1s
`, dns.Addr(), tokenFile, repEgress, strings.TrimPrefix(reports.Addr(), "127.0.0.1:"), maillog, repEgress)
	env := gwtest.Start(t, gwtest.Options{Config: cfg, ExtraMainCF: map[string]string{
		"maillog_file": maillog, "maillog_file_prefixes": logDir,
	}})
	env.Sink.RefuseRcpt(func(to string) *smtp.SMTPError {
		if strings.HasPrefix(to, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected: User unknown"}
		}
		return nil
	})
	svc, reader, watcher := reputation.Running(env.Daemon.Host())
	if svc == nil || reader == nil || watcher == nil {
		t.Fatal("reputation loop not running in serve")
	}
	send := func(to string, i int, bulk bool) *testenv.SMTPResult {
		t.Helper()
		return env.Send(testenv.SendOptions{LocalAddr: "127.0.0.31", From: "news@bulkco.example", To: []string{to}, Data: repMsg("news@bulkco.example", to, i, bulk)})
	}
	standing := func() reputation.Standing {
		st, err := svc.Standing(context.Background(), "bulkco")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitFinal := func(n int64) reputation.Standing {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			st := standing()
			if st.Final() >= n {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("bounce standing stuck at %+v, want %d final results\nPostfix log:\n%s", st, n, readFile(maillog))
			}
			env.Postfix.Flush()
			time.Sleep(200 * time.Millisecond)
		}
	}
	n := 0
	t.Run("delivered mail counts as sent: rate 0, level ok", func(t *testing.T) {
		for ; n < 10; n++ {
			if r := send(fmt.Sprintf("user%d@example.org", n), n, false); !r.Delivered() {
				t.Fatalf("message %d refused:\n%s", n, r)
			}
		}
		st := waitFinal(10)
		if st.Sent != 10 || st.Hard != 0 || st.Level != reputation.LevelOK {
			t.Fatalf("standing %+v", st)
		}
	})
	t.Run("postfix logrotate: the reader follows the new file", func(t *testing.T) {
		// Postfix ≥ 3.4 renames maillog_file (and compresses the old one)
		// and reopens it: the follower must go on with the new file.
		out, err := exec.Command("postfix", "-c", env.Postfix.ConfigDir(), "logrotate").CombinedOutput()
		if err != nil {
			t.Fatalf("postfix logrotate: %v\n%s", err, out)
		}
		if rotated, _ := filepath.Glob(maillog + ".*"); len(rotated) == 0 {
			t.Fatalf("no rotated log next to %s: %s", maillog, out)
		}
	})
	t.Run("a 550 5.1.1 is a hard bounce: the rate moves over warn", func(t *testing.T) {
		if r := send("gone1@example.org", n, false); !r.Delivered() {
			t.Fatalf("refused at the gateway:\n%s", r)
		}
		n++
		st := waitFinal(11)
		if st.Hard != 1 || st.Level != reputation.LevelWarn {
			t.Fatalf("standing %+v", st)
		}
		// Bulk mail still goes at warn.
		if r := send("user-b@example.org", n, true); !r.Delivered() {
			t.Fatalf("bulk refused at warn:\n%s", r)
		}
		n++
		waitFinal(12)
	})
	t.Run("over act the next bulk message is deferred, other mail goes", func(t *testing.T) {
		if r := send("gone2@example.org", n, false); !r.Delivered() {
			t.Fatalf("refused:\n%s", r)
		}
		n++
		st := waitFinal(13)
		if st.Hard != 2 || st.Level != reputation.LevelAct {
			t.Fatalf("standing %+v (2 of 13 = 15%%)", st)
		}
		r := send("user-c@example.org", n, true)
		if r.Delivered() || r.EndOfData == nil || r.EndOfData.Code != 451 || r.EndOfData.EnhancedCode != "4.7.1" || !strings.Contains(r.EndOfData.Text, "too many recipients do not exist") {
			t.Fatalf("bulk over act: want 451 4.7.1 at end of data, got\n%s", r)
		}
		n++
		if r := send("user-d@example.org", n, false); !r.Delivered() {
			t.Fatalf("non-bulk mail refused under defer_bulk:\n%s", r)
		}
		n++
		found := false
		for _, d := range env.Decisions() {
			if d["customer"] == "bulkco" && d["finding"] == reputation.FindingHigh && d["effective"] == "defer" {
				found = true
			}
		}
		if !found {
			t.Errorf("no decision line with %s:\n%s", reputation.FindingHigh, env.Log())
		}
		if !strings.Contains(env.Log(), `"event":"delivery"`) || !strings.Contains(env.Log(), `"class":"hard"`) || !strings.Contains(env.Log(), `"dsn":"5.1.1"`) {
			t.Errorf("no delivery log line for the hard bounce")
		}
		if strings.Contains(env.Log(), "gone2@example.org") {
			t.Errorf("a recipient was logged in plain text")
		}
	})
	t.Run("the egress address is listed: one postmaster mail naming the customer", func(t *testing.T) {
		if err := dns.Set(repErrRR + repListedRR); err != nil {
			t.Fatal(err)
		}
		msgs, err := reports.WaitFor(1, 30*time.Second)
		if err != nil {
			t.Fatalf("%v\n%s", err, env.Log())
		}
		m := msgs[0]
		body := string(m.Data)
		if len(m.To) != 1 || m.To[0] != "postmaster@provider.example" || !strings.Contains(body, "egress 192.0.2.10 listed on zen.spamhaus.org (127.0.0.2)") {
			t.Fatalf("mail to %v:\n%s", m.To, body)
		}
		if !strings.Contains(body, "bulkco") || !strings.Contains(body, "Auto-Submitted: auto-generated") {
			t.Errorf("mail does not name the sender:\n%s", body)
		}
		time.Sleep(2500 * time.Millisecond) // two more rounds of the watcher
		if n := len(reports.Messages()); n != 1 {
			t.Errorf("%d postmaster mails, want 1", n)
		}
		if !strings.Contains(env.Log(), `"event":"dnsbl_listed"`) || !strings.Contains(env.Log(), `"result":"error_code"`) {
			t.Errorf("log lacks the listing or the error code of 192.0.2.11")
		}
	})
	t.Run("metrics and the admin API show both loops", func(t *testing.T) {
		base := "http://" + env.Daemon.ServiceAddr("admin").String()
		get := func(path string) string {
			req, _ := http.NewRequest("GET", base+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
			}
			return string(b)
		}
		mt := get("/metrics")
		for _, want := range []string{
			`aupguard_dnsbl_listed{address="192.0.2.10",zone="zen.spamhaus.org"} 1`,
			`aupguard_dnsbl_listed{address="192.0.2.11",zone="zen.spamhaus.org"}`, // absent: never answered
			`aupguard_delivery_results_total{class="hard"} 2`,
			`aupguard_customer_bounce_rate{customer="bulkco"}`,
			`aupguard_dnsbl_queries_total{result="error_code",zone="zen.spamhaus.org"}`,
			`aupguard_dnsbl_mails_total{result="sent"} 1`,
		} {
			absent := strings.Contains(want, "192.0.2.11")
			if strings.Contains(mt, want) == absent {
				t.Errorf("metrics: %s present=%v, want %v", want, !absent, !absent)
			}
		}
		var o reputation.Overview
		if err := json.Unmarshal([]byte(get("/api/reputation")), &o); err != nil {
			t.Fatal(err)
		}
		if len(o.Bounces) != 2 || o.Bounces[0].Customer != "bulkco" || o.Bounces[0].Level != reputation.LevelAct {
			t.Errorf("api bounces %+v", o.Bounces)
		}
		listed := false
		for _, l := range o.Listings {
			if l.Address == repEgress && l.Listed && len(l.History) == 2 && l.Notified {
				listed = true
			}
		}
		if !listed {
			t.Errorf("api listings %+v", o.Listings)
		}
		dash := get("/")
		for _, want := range []string{"Bounce rates", "bulkco", "Blocklists", "192.0.2.10"} {
			if !strings.Contains(dash, want) {
				t.Errorf("dashboard lacks %q", want)
			}
		}
		for _, want := range []string{
			`aupguard_delivery_log_state{state="following"} 1`,
			`aupguard_delivery_log_rotations_total{how="rename"} 1`, // postfix logrotate
			`aupguard_delivery_log_last_line_timestamp_seconds `,
			`aupguard_delivery_log_lag_bytes 0`,
			`aupguard_delivery_log_lag_seconds `,
			`aupguard_delivery_lines_foreign_total 0`,
		} {
			if !strings.Contains(mt, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
	t.Run("the log path briefly a directory: /readyz degraded, then the reader goes on", func(t *testing.T) {
		base := "http://" + env.Daemon.ServiceAddr("admin").String()
		type readyz struct {
			Status      string                    `json:"status"`
			Degraded    []string                  `json:"degraded"`
			DeliveryLog reputation.FollowSnapshot `json:"delivery_log"`
		}
		ready := func() (int, readyz) {
			t.Helper()
			req, _ := http.NewRequest("GET", base+"/readyz", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r readyz
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, r
		}
		waitReady := func(status string) readyz {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, r := ready()
				if code == 200 && r.Status == status {
					return r
				}
				if time.Now().After(deadline) {
					t.Fatalf("/readyz %d %+v, want 200 %s", code, r, status)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		r := waitReady("ready")
		if d := r.DeliveryLog; d.State != reputation.StateFollowing || d.LastLine == nil || d.LagBytes == nil || d.Source != maillog {
			t.Fatalf("/readyz delivery_log %+v", d)
		}
		if err := os.Rename(maillog, maillog+".away"); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(maillog, 0o755); err != nil {
			t.Fatal(err)
		}
		r = waitReady("degraded")
		if d := r.DeliveryLog; d.State != reputation.StateRetrying || d.ErrorKind != reputation.ErrKindNotRegular || len(r.Degraded) != 1 {
			t.Fatalf("/readyz %+v", r)
		}
		if err := os.Remove(maillog); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(maillog+".away", maillog); err != nil {
			t.Fatal(err)
		}
		r = waitReady("ready")
		if r.DeliveryLog.Recoveries < 1 || r.DeliveryLog.Errors[reputation.ErrKindNotRegular] < 1 {
			t.Errorf("/readyz after recovery %+v", r.DeliveryLog)
		}
		if r := send("gone3@example.org", n, false); !r.Delivered() {
			t.Fatalf("refused:\n%s", r)
		}
		n++
		if st := waitFinal(15); st.Hard != 3 {
			t.Fatalf("standing %+v", st)
		}
		if strings.Count(env.Log(), `"msg":"delivery log unreadable, retrying with back-off","event":"delivery_log","source":"`+maillog+`","kind":"not_regular"`) != 1 ||
			strings.Count(env.Log(), `"msg":"delivery log readable again","event":"delivery_log","source":"`+maillog+`","kind":"not_regular"`) != 1 {
			t.Errorf("want one failure and one recovery line in the log")
		}
	})
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
