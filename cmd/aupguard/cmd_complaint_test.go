package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// complaintReport is one mbox entry: an ARF report about a message of beta
// stamped with stamp, naming rcpts in Original-Rcpt-To.
func complaintReport(id, stamp string, rcpts ...string) string {
	var b strings.Builder
	b.WriteString("From fbl@isp.example Mon Nov 23 10:00:00 2026\nFrom: fbl@isp.example\nMessage-ID: <" + id + ">\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=B\n\n--B\nContent-Type: message/feedback-report\n\n" +
		"Feedback-Type: abuse\nUser-Agent: t\nVersion: 1\n")
	for _, r := range rcpts {
		b.WriteString("Original-Rcpt-To: <" + r + ">\n")
	}
	b.WriteString("\n--B\nContent-Type: text/rfc822-headers\n\n" + optout.StampHeader + ": " + stamp + "\nFrom: n@beta.example\n\n--B--\n\n")
	return b.String()
}

// TestComplaintImportRefusesForgedDuplicatedAndStuffed, through `aupguard complaint import` on the memory store and on Redis:
// one mbox holds a genuine complaint, 50 copies of it, a report stuffed
// with 1,597 chosen Original-Rcpt-To, a forged stamp, another message's
// stamp, a genuine complaint about a three-recipient message and an
// outsider's report about that message. beta's complaints and list grow
// by one per genuine (message, recipient): 2.
func TestComplaintImportRefusesForgedDuplicatedAndStuffed(t *testing.T) {
	stores := map[string]func(t *testing.T, dir string) string{
		"memory": func(t *testing.T, dir string) string { return "{backend: memory, path: " + dir + "}" },
		"redis": func(t *testing.T, dir string) string {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			return "{backend: redis, path: " + dir + ", redis: {addrs: [\"" + r.Addr() + "\"]}}"
		},
	}
	for name, storeCfg := range stores {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			storeDir := filepath.Join(dir, "store")
			os.MkdirAll(storeDir, 0o700)
			os.WriteFile(filepath.Join(storeDir, "secret"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
			cfg := filepath.Join(dir, "aupguard.yaml")
			os.WriteFile(cfg, []byte("store: "+storeCfg(t, storeDir)+"\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n  - id: beta\n    networks: [192.0.2.2]\n    domains: [beta.example]\n"), 0o600)
			key, _, err := secrets.Load("", storeDir)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			one := optout.Stamp(key, "beta", "M1", "victim@mailbox.example", now)
			other := optout.Stamp(key, "beta", "M2", "someone@mailbox.example", now)
			multi := optout.Stamp(key, "beta", "M3", "", now)
			// The three-recipient message's set, as feedback_stamp stores it.
			svc, closeFn, err := openOptout(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var tags []string
			for _, r := range []string{"a@mailbox.example", "b@mailbox.example", "c@other.example"} {
				tags = append(tags, optout.RcptTag(key, "M3", r))
			}
			if err := svc.Backend.PutRecipients(context.Background(), "beta", "M3", tags, svc.Settings.RecordTTL, now); err != nil {
				t.Fatal(err)
			}
			closeFn()

			var mbox strings.Builder
			mbox.WriteString(complaintReport("genuine@isp", one, "victim@mailbox.example"))
			for i := 0; i < 50; i++ {
				mbox.WriteString(complaintReport(fmt.Sprintf("copy%d@isp", i), one, "victim@mailbox.example"))
			}
			stuffed := []string{"victim@mailbox.example"}
			for i := 0; i < 1597; i++ {
				stuffed = append(stuffed, fmt.Sprintf("chosen%04d@victims.example", i))
			}
			mbox.WriteString(complaintReport("stuffed@isp", one, stuffed...))
			mbox.WriteString(complaintReport("forged@isp", strings.Replace(one, "c=beta", "c=acme", 1), "victim@mailbox.example"))
			mbox.WriteString(complaintReport("other@isp", other, "victim@mailbox.example"))
			mbox.WriteString(complaintReport("multi@isp", multi, "b@mailbox.example"))
			mbox.WriteString(complaintReport("outsider@isp", multi, "chosen@victims.example"))
			path := filepath.Join(dir, "fbl.mbox")
			os.WriteFile(path, []byte(mbox.String()), 0o600)

			var out, errOut bytes.Buffer
			st := runMain([]string{"complaint", "import", "-config", cfg, "-reporter", "isp-fbl", path}, &out, &errOut)
			want := "56 report(s): 52 recorded (2 complaint(s) counted, 50 duplicate(s), 0 not counted), 3 refused and 1 failed, not recorded; 2 recipient(s) newly suppressed"
			if st != 1 || !strings.Contains(out.String(), want) {
				t.Fatalf("status %d\nstdout: %.2000s\nstderr: %s\nwant 1 and %q", st, out.String(), errOut.String(), want)
			}
			for _, line := range []string{
				"report 52 (line", "Message-ID <stuffed@isp>): refused, not recorded: complaint refused (several_recipients): the report names 1598 recipients",
				"Message-ID <forged@isp>): not recorded: complaint cannot be attributed",
				"Message-ID <other@isp>): refused, not recorded: complaint refused (not_recipient)",
				"Message-ID <outsider@isp>): refused, not recorded: complaint refused (not_recipient)",
			} {
				if !strings.Contains(errOut.String(), line) {
					t.Errorf("stderr lacks %q:\n%s", line, errOut.String())
				}
			}
			if !strings.Contains(out.String(), "Message-ID <copy49@isp>): customer beta (by stamp), abuse, 1 recipient(s)") ||
				!strings.Contains(out.String(), "not counted (already counted for this message and recipient)") {
				t.Errorf("duplicates not reported as such:\n%.3000s", out.String())
			}
			for _, c := range []struct {
				args []string
				st   int
				has  string
			}{
				{[]string{"customer", "status", "-config", cfg, "beta"}, 0, "complaints:       2 of"},
				{[]string{"customer", "status", "-config", cfg, "beta"}, 0, "suppressed:       2 addresses"},
				{[]string{"optout", "check", "-config", cfg, "-list", "beta", "victim@mailbox.example"}, 0, "source complaint"},
				{[]string{"optout", "check", "-config", cfg, "-list", "beta", "b@mailbox.example"}, 0, "source complaint"},
				{[]string{"optout", "check", "-config", cfg, "-list", "beta", "chosen0000@victims.example"}, 1, "not suppressed"},
				{[]string{"optout", "check", "-config", cfg, "-list", "beta", "chosen@victims.example"}, 1, "not suppressed"},
			} {
				out.Reset()
				errOut.Reset()
				if st := runMain(c.args, &out, &errOut); st != c.st || !strings.Contains(out.String(), c.has) {
					t.Errorf("%v: %d %s %s; want %d with %q", c.args, st, out.String(), errOut.String(), c.st, c.has)
				}
			}
			// The same mbox again changes nothing: all duplicates or refused.
			out.Reset()
			errOut.Reset()
			runMain([]string{"complaint", "import", "-config", cfg, path}, &out, &errOut)
			if want := "56 report(s): 52 recorded (0 complaint(s) counted, 52 duplicate(s), 0 not counted), 3 refused and 1 failed, not recorded; 0 recipient(s) newly suppressed"; !strings.Contains(out.String(), want) {
				t.Fatalf("second import: %s\nwant %q", out.String(), want)
			}
		})
	}
}

// TestComplaintImportStoreDownTempFails: with Redis gone mid-import the
// command exits 75 (EX_TEMPFAIL: a piping MTA retries) and says to import
// again; importing again once Redis is back counts each complaint once.
func TestComplaintImportStoreDownTempFails(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	os.MkdirAll(storeDir, 0o700)
	os.WriteFile(filepath.Join(storeDir, "secret"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte("store: {backend: redis, path: "+storeDir+", timeout: 300ms, redis: {addrs: [\""+r.Addr()+"\"], dial_timeout: 200ms}}\ncustomers:\n  - id: beta\n    networks: [192.0.2.2]\n    domains: [beta.example]\n"), 0o600)
	key, _, err := secrets.Load("", storeDir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "one.eml")
	os.WriteFile(path, []byte(strings.TrimPrefix(complaintReport("one@isp", optout.Stamp(key, "beta", "M1", "victim@mailbox.example", time.Now()), "victim@mailbox.example"), "From fbl@isp.example Mon Nov 23 10:00:00 2026\n")), 0o600)
	r.Stop()
	var out, errOut bytes.Buffer
	if st := runMain([]string{"complaint", "import", "-config", cfg, path}, &out, &errOut); st != 75 || !strings.Contains(errOut.String(), "import the input again later") {
		t.Fatalf("store down: status %d\n%s\n%s", st, out.String(), errOut.String())
	}
	r.Start()
	for i, want := range []string{"1 complaint(s) counted, 0 duplicate(s)", "0 complaint(s) counted, 1 duplicate(s)"} {
		out.Reset()
		errOut.Reset()
		if st := runMain([]string{"complaint", "import", "-config", cfg, path}, &out, &errOut); st != 0 || !strings.Contains(out.String(), want) {
			t.Fatalf("import %d after the outage: %d\n%s\n%s", i, st, out.String(), errOut.String())
		}
	}
}
