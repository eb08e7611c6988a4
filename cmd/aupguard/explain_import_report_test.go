package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/engine/daemon"
	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/observability/events"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// redisSnapshot is every key of a Redis database: its type and DUMP, and
// whether it has a TTL (and how long, to see that none was extended).
type redisSnapshot map[string]struct {
	dump string
	ttl  time.Duration
}

func snapshot(t *testing.T, c *redis.Client) redisSnapshot {
	t.Helper()
	ctx := context.Background()
	out := redisSnapshot{}
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		dump, err := c.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = struct {
			dump string
			ttl  time.Duration
		}{dump, ttl}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExplainDryRunLeavesRedisUnchanged: `aupguard explain` on a config with the Redis store, three runs on a bulk message
// to an opted-out and another recipient, leaves every key of the real Redis
// as it was (no bulk fingerprint, spike window, rate or per-recipient
// counter, opt-out escalation count), while it still reports what the
// gateway would do.
func TestExplainDryRunLeavesRedisUnchanged(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "aupguard.yaml")
	if err := os.WriteFile(cfg, []byte(`
store: {backend: redis, timeout: 2s, redis: {addrs: ["`+r.Addr()+`"]}}
secret_file: `+secret+`
chain: [optout_suppression, rate_limit, bulk_mail, feedback_stamp, unsubscribe_link]
bulk: {fingerprint_recipients: 1, fingerprint_window: 24h}
spike: {enabled: true, window: 10m}
optout: {escalation: {threshold: 2, window: 24h}}
defaults:
  limits: {messages_per_minute: 60, messages_per_day: 1000, recipients_per_day: 1000, per_recipient_per_hour: 20}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if st := runMain([]string{"optout", "add", "-config", cfg, "-list", "acme", "gone@dest.example"}, &out, &errOut); st != 0 {
		t.Fatalf("optout add: %d %s", st, errOut.String())
	}
	msg := filepath.Join(dir, "bulk.eml")
	if err := os.WriteFile(msg, []byte("From: news@acme.example\r\nTo: gone@dest.example, kept@dest.example\r\nSubject: offers\r\nPrecedence: bulk\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x1@acme.example>\r\n\r\n"+strings.Repeat("The same offer body for everyone on the list.\r\n", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	before := snapshot(t, c)
	if len(before) == 0 {
		t.Fatal("no keys before explain: the opt-out was not stored in Redis")
	}
	for i := 0; i < 3; i++ {
		out.Reset()
		errOut.Reset()
		if st := runMain([]string{"explain", "-config", cfg, "-customer", "acme", "-mail-from", "news@acme.example", msg}, &out, &errOut); st != 0 {
			t.Fatalf("explain run %d: %d %s", i, st, errOut.String())
		}
		// It still explains: the opted-out recipient is refused, the bulk
		// message without one-click headers is refused.
		if !strings.Contains(out.String(), "recipient gone@dest.example refused: 550 5.7.1") ||
			!strings.Contains(out.String(), "bulk_missing_one_click") || !strings.Contains(out.String(), "verdict: reject") {
			t.Fatalf("explain run %d did not explain:\n%s", i, out.String())
		}
	}
	after := snapshot(t, c)
	var changed []string
	for k, b := range before {
		a, ok := after[k]
		switch {
		case !ok:
			changed = append(changed, k+" deleted")
		case a.dump != b.dump:
			changed = append(changed, k+" changed")
		case b.ttl < 0 && a.ttl >= 0, a.ttl > b.ttl:
			changed = append(changed, fmt.Sprintf("%s ttl %v -> %v", k, b.ttl, a.ttl))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			changed = append(changed, k+" created")
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		t.Fatalf("explain wrote to Redis:\n%s", strings.Join(changed, "\n"))
	}
}

// TestImportsAddUp, through the commands: an
// unknown list is an error naming the known ones; a complaint mbox with a
// good and a bad report records the good one, names the bad one and says
// what was recorded; CSV counts add up.
func TestImportsAddUp(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	os.MkdirAll(store, 0o700)
	os.WriteFile(filepath.Join(store, "secret"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte("store: {backend: memory, path: "+store+"}\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n  - id: beta\n    networks: [192.0.2.2]\n    domains: [beta.example]\n"), 0o600)
	key, _, err := secrets.Load("", store)
	if err != nil {
		t.Fatal(err)
	}
	report := func(id, rcpt, tail string) string {
		return "From fbl@isp.example Mon Nov 23 10:00:00 2026\nFrom: fbl@isp.example\nMessage-ID: <" + id + ">\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=feedback-report; boundary=B\n\n--B\nContent-Type: message/feedback-report\n\n" +
			"Feedback-Type: abuse\nUser-Agent: t\nVersion: 1\nOriginal-Rcpt-To: <" + rcpt + ">\n\n--B\nContent-Type: text/rfc822-headers\n\n" +
			optout.StampHeader + ": " + optout.Stamp(key, "acme", "M-"+strings.ReplaceAll(id, "@", "-"), rcpt, time.Now()) + "\nFrom: n@acme.example\n\n" + tail + "\n"
	}
	mbox := filepath.Join(dir, "fbl.mbox")
	// The second report is cut short: no closing boundary.
	os.WriteFile(mbox, []byte(report("good@isp", "c@x.example", "--B--\n")+report("cut@isp", "d@x.example", "")), 0o600)
	quoted := filepath.Join(dir, "quoted.csv")
	os.WriteFile(quoted, []byte(`address
"""Jane""@Example.COM."
`), 0o600)
	csv := filepath.Join(dir, "five.csv")
	os.WriteFile(csv, []byte("address,note\na@x.example,ok\nbad \"quote,x\nb@x.example,ok\nnot-an-address,x\na@x.example,again\n"), 0o600)
	for _, tt := range []struct {
		name        string
		args        []string
		status      int
		out, errOut string
	}{
		{"typo list refused", []string{"optout", "add", "-config", cfg, "-list", "acmee", "x@y.example"}, 1, "", `unknown list "acmee": known lists are acme, beta (customer ids) and * (provider-wide)`},
		{"typo list not created", []string{"optout", "check", "-config", cfg, "-list", "acme", "x@y.example"}, 1, "not suppressed", ""},
		{"mbox: one recorded, one named", []string{"complaint", "import", "-config", cfg, mbox}, 1,
			"2 report(s): 1 recorded (1 complaint(s) counted, 0 duplicate(s), 0 not counted), 0 refused and 1 failed, not recorded; 1 recipient(s) newly suppressed",
			"report 2 (line 23, Message-ID <cut@isp>): not recorded: malformed feedback report: the multipart/report ends after part 2 without its closing boundary"},
		{"good report recorded", []string{"optout", "check", "-config", cfg, "-list", "acme", "c@x.example"}, 0, "source complaint", ""},
		{"bad report not recorded", []string{"optout", "check", "-config", cfg, "-list", "acme", "d@x.example"}, 1, "not suppressed", ""},
		{"csv quoted address imported canonical", []string{"optout", "import", "-config", cfg, "-list", "beta", quoted}, 0, "1 lines: 1 added", ""},
		{"canonical form suppressed", []string{"optout", "check", "-config", cfg, "-list", "beta", "jane@example.com"}, 0, "suppressed by list beta", ""},
		{"csv adds up", []string{"optout", "import", "-config", cfg, "-list", "acme", csv}, 1, "5 lines: 2 added, 1 already listed, 2 bad", "five.csv:3: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			st := runMain(tt.args, &out, &errOut)
			if st != tt.status || !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.errOut) {
				t.Fatalf("%v: status %d\nstdout: %s\nstderr: %s\nwant %d, %q, %q", tt.args, st, out.String(), errOut.String(), tt.status, tt.out, tt.errOut)
			}
		})
	}
}

// TestReportFreshInstall: with the memory store and
// nothing recorded yet, `aupguard report` prints an empty report.
func TestReportFreshInstall(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte("store: {backend: memory, path: "+filepath.Join(dir, "store")+"}\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
	var out, errOut bytes.Buffer
	if st := runMain([]string{"report", "-config", cfg, "-format", "json"}, &out, &errOut); st != 0 {
		t.Fatalf("report on a fresh install: %d\n%s", st, errOut.String())
	}
	var rep struct {
		Customer string `json:"customer"`
		Totals   *struct {
			Messages int `json:"messages"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Totals == nil || rep.Totals.Messages != 0 {
		t.Fatalf("want an empty JSON report, got %v: %s", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "events.jsonl")); err == nil {
		t.Error("the report command created the events file")
	}
}

// TestAdminAndReportWithMemoryStore: with a running gateway (package daemon, the code `aupguard serve` runs) on the memory
// store: "admin server listening" is logged once; the dashboard answers
// 404 for a customer that does not exist; `aupguard report` shows the same
// standing (complaints, rate) as the admin API, where it showed "-".
func TestAdminAndReportWithMemoryStore(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	os.MkdirAll(storeDir, 0o700)
	os.WriteFile(filepath.Join(storeDir, "secret"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	const token = "0123456789abcdef-admin-token"
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte(token+"\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte(`
milter: {listen: "inet:127.0.0.1:0"}
log: {format: json}
store: {backend: memory, path: `+storeDir+`}
chain: [header_syntax]
admin: {listen: "`+adminAddr+`", token_file: `+tok+`}
optout: {unsubscribe: {listen: "127.0.0.1:0"}}
customers:
  - id: acme
    networks: [192.0.2.1]
    domains: [acme.example]
`), 0o600)
	logBuf := &testenv.LogBuffer{}
	d, err := daemon.New(daemon.Options{ConfigPath: cfg, LogOutput: logBuf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	call := func(method, path string, body io.Reader) (int, string) {
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, body)
		req.Header.Set("Authorization", "Bearer "+token)
		if method == "POST" && path == "/api/complaints" {
			req.Header.Set("Content-Type", "message/rfc822")
		}
		var resp *http.Response
		for i := 0; i < 100; i++ {
			if resp, err = http.DefaultClient.Do(req); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/?customer=nosuch", nil); code != 404 {
		t.Errorf("/?customer=nosuch: %d %.200s, want 404", code, body)
	}
	if code, _ := call("GET", "/?customer=acme", nil); code != 200 {
		t.Errorf("/?customer=acme: %d, want 200", code)
	}
	if n := strings.Count(logBuf.String(), `"admin server listening"`); n != 1 {
		t.Errorf(`"admin server listening" logged %d times, want once:\n%s`, n, logBuf.String())
	}
	key, _, err := secrets.Load("", storeDir)
	if err != nil {
		t.Fatal(err)
	}
	arf := "From: fbl@isp.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=B\r\n\r\n--B\r\nContent-Type: message/feedback-report\r\n\r\n" +
		"Feedback-Type: abuse\r\nUser-Agent: t\r\nVersion: 1\r\nOriginal-Rcpt-To: <c@x.example>\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" +
		optout.StampHeader + ": " + optout.Stamp(key, "acme", "M1", "c@x.example", time.Now()) + "\r\nFrom: n@acme.example\r\n\r\n--B--\r\n"
	if code, body := call("POST", "/api/complaints", strings.NewReader(arf)); code != 200 {
		t.Fatalf("complaint: %d %s", code, body)
	}
	code, apiBody := call("GET", "/api/customers/acme/flag", nil)
	if code != 200 || !strings.Contains(apiBody, `"complaints": 1`) {
		t.Fatalf("API standing: %d %s", code, apiBody)
	}
	// One message of acme through the running gateway's engine, recorded
	// to the events file the command reads.
	s := d.Engine().NewSession()
	s.Connect("client.acme.example", netip.MustParseAddr("192.0.2.1"))
	s.Helo("client.acme.example")
	s.Mail(ctx, "<n@acme.example>", "", "")
	s.Rcpt(ctx, "<c2@x.example>", "")
	for _, h := range [][2]string{{"From", " n@acme.example"}, {"To", " c2@x.example"}, {"Subject", " hi"}, {"Date", " Mon, 23 Nov 2026 10:00:00 +0000"}, {"Message-ID", " <r1@acme.example>"}} {
		s.Header(h[0], h[1])
	}
	s.Body([]byte("Hello.\r\n"))
	if out := s.EndOfMessage(ctx, "QID1"); out.Action != policy.Accept {
		t.Fatalf("message not accepted: %+v", out)
	}
	s.Close()
	rec, err := events.New(d.Deps().Store, d.Deps().Config.Events, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if st := runMain([]string{"report", "-config", cfg, "-format", "json", "-customer", "acme"}, &out, &errOut); st != 0 {
		t.Fatalf("report: %d %s", st, errOut.String())
	}
	if !strings.Contains(out.String(), `"complaints": 1`) && !strings.Contains(out.String(), `"complaints":1`) {
		t.Fatalf("the report does not show the standing the API shows (%s):\n%s", apiBody, out.String())
	}
}
