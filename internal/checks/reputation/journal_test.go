package reputation

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// journalEntry is one journal entry: the fields a process cannot choose
// (_SYSTEMD_UNIT, _PID: journald adds them from the sender's cgroup and
// credentials) and those it can (SYSLOG_IDENTIFIER, MESSAGE).
type journalEntry struct {
	unit, ident, message string
}

// writeJournal writes entries as a journal file in dir, the way
// journald stores them: systemd-journal-remote converts the journal
// export format (systemd.io/JOURNAL_EXPORT_FORMATS) into a journal file.
func writeJournal(t *testing.T, dir, name string, entries []journalEntry) {
	t.Helper()
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	bootID := strings.ReplaceAll(strings.TrimSpace(string(boot)), "-", "")
	var b bytes.Buffer
	now := time.Now()
	for i, e := range entries {
		fmt.Fprintf(&b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n", now.Add(time.Duration(i)*time.Millisecond).UnixMicro(), 1000+i, bootID)
		fmt.Fprintf(&b, "_SYSTEMD_UNIT=%s\n_PID=%d\nPRIORITY=6\nSYSLOG_FACILITY=2\nSYSLOG_IDENTIFIER=%s\nMESSAGE=%s\n\n", e.unit, 4200+i, e.ident, e.message)
	}
	export := filepath.Join(t.TempDir(), name+".export")
	if err := os.WriteFile(export, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file appears whole (written aside, then renamed), as journald's
	// rotated files do, so that a follower never sees half of it.
	tmp := filepath.Join(t.TempDir(), name+".journal")
	out, err := exec.Command(testenv.Bin(t, "systemd-journal-remote"), "--output="+tmp, export).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name+".journal")); err != nil {
		t.Fatal(err)
	}
}

// TestReaderJournal reads delivery results from the systemd journal the
// way docs/reputation.md says for a Debian 12 without syslog: the real
// journalctl, `journalctl -f -o cat -u postfix@-` (on a journal
// directory of its own, -D), piped into the reader (source "-"). Results
// already in the journal and results written while it follows are
// counted; lines that a customer's process logged under Postfix's own tag
// (logger -t postfix/smtp) are not, because the unit comes from the
// sender's cgroup; when journalctl ends the reader says so.
func TestReaderJournal(t *testing.T) {
	testenv.Need(t, "journalctl", "systemd-journal-remote")
	clk := clock.NewFake(t0)
	h := backends()[0].open(t, clk)
	svc := newTestService(t, h, testConfig(t, "reputation:\n  deliveries: {source: \"-\", egress: 192.0.2.10}\n"), clk, nil)
	ctx := context.Background()
	for _, q := range []string{"4F3A21C0D2", "5B7C11A0E3"} {
		if _, err := svc.Backend.Remember(ctx, q, Message{Customer: "acme"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	const unit = "postfix@-.service"
	forged := func(q, to string) journalEntry {
		// A site's PHP on the same host: `logger -t postfix/smtp ...`.
		return journalEntry{"php8.2-fpm.service", "postfix/smtp", q + ": to=<" + to + ">, relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=5.1.1, status=bounced (550 5.1.1 forged)"}
	}
	dir := t.TempDir()
	writeJournal(t, dir, "system", []journalEntry{
		{unit, "postfix/qmgr", "4F3A21C0D2: from=<billing@acme.example>, size=1234, nrcpt=2 (queue active)"},
		{unit, "postfix/smtp", "4F3A21C0D2: to=<alice@example.org>, relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9A1)"},
		forged("4F3A21C0D2", "carol@example.org"),
		{"session-3.scope", "postfix/smtp", "5B7C11A0E3: to=<dave@example.org>, relay=none, delay=1, delays=0/0/1/0, dsn=5.1.1, status=bounced (forged from a login shell)"},
	})

	cmd := exec.Command(testenv.Bin(t, "journalctl"), "-D", dir, "-f", "-o", "cat", "-u", "postfix@-")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := NewReader(svc)
	done := make(chan error, 1)
	go func() { done <- rd.Run(ctx, stdout) }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	waitResults := func(n int64, what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for rd.Stats.Results.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d results read, want %d (journalctl: %s)", what, rd.Stats.Results.Load(), n, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitResults(1, "the result already in the journal")

	// Written while journalctl follows: a new journal file in the
	// directory, as journald's rotation makes.
	writeJournal(t, dir, "system@later", []journalEntry{
		forged("5B7C11A0E3", "erin@example.org"),
		{unit, "postfix/smtp", "5B7C11A0E3: to=<bob@example.org>, relay=mx.example.org[192.0.2.25]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=5.1.1, status=bounced (host mx.example.org[192.0.2.25] said: 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown (in reply to RCPT TO command))"},
		{unit, "postfix/qmgr", "5B7C11A0E3: removed"},
	})
	waitResults(2, "the result written while following")

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not end with journalctl's output")
	}
	st, err := svc.Standing(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 1 || st.Hard != 1 || rd.Stats.Results.Load() != 2 || rd.Stats.Lines.Load() != 4 {
		t.Errorf("standing %+v after %d lines, %d results: want 1 sent and 1 hard bounce from 4 of postfix's lines, none of the 3 forged", st.Counts, rd.Stats.Lines.Load(), rd.Stats.Results.Load())
	}
	if sn := rd.Snapshot(); sn.State != StateEnded || sn.Degraded(time.Hour) == "" {
		t.Errorf("status after journalctl ended %+v, want ended and degraded", sn)
	}
}
