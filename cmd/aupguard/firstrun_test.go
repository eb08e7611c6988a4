package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// firstRunSteps are the commands of README.md's block marked
// "<!-- first-run: ... -->", in order, without the "go run ./cmd/aupguard"
// prefix; background reports a trailing "&".
func firstRunSteps(t *testing.T) (steps [][]string, background []bool) {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	state := 0 // 0 before the marker, 1 before the fence, 2 in the block
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case state == 0 && strings.HasPrefix(line, "<!-- first-run:"):
			state = 1
		case state == 1 && line == "```sh":
			state = 2
		case state == 2 && line == "```":
			return steps, background
		case state == 2 && (line == "" || strings.HasPrefix(line, "#")):
		case state == 2:
			rest, ok := strings.CutPrefix(line, "go run ./cmd/aupguard ")
			if !ok {
				t.Fatalf("README first-run step %q is not an aupguard command", line)
			}
			rest, bg := strings.CutSuffix(rest, " &")
			steps = append(steps, strings.Fields(rest))
			background = append(background, bg)
		}
	}
	t.Fatal("README.md has no complete first-run block")
	return nil, nil
}

// TestFirstRunAsWritten runs README.md's first-run commands as written, in
// a fresh folder holding only the binary and configs/ (the example config
// with its listeners, the milter's loopback TCP port included, moved to
// free ports, its resolver to an in-process
// DNS server, and the README's step 3 done: the example customer gets the
// test client's address), as an unprivileged user (uid 65534 when the test
// runs as root), with a real Postfix in front of the gateway:
// check-config passes and prints no null; serve starts, writes the admin
// token 0600 and logs its file, not its value; through Postfix an
// unidentified client is refused and the customer's forged mail is only
// logged (monitor mode); a hard bounce Postfix writes to its own
// maillog_file (the Debian 12 way, docs/reputation.md) is read and counted
// by the unprivileged gateway; customer list and explain answer beside the
// running gateway (embedded store); report -mail goes through the same
// Postfix and aupguard lets the gateway's own mail pass.
func TestFirstRunAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary with Postfix")
	}
	steps, background := firstRunSteps(t)
	var names []string
	for _, s := range steps {
		names = append(names, s[0])
	}
	if got, want := strings.Join(names, " "), "check-config serve customer explain report"; got != want {
		t.Fatalf("README first-run commands are %q; this test knows what to expect of %q: update both together", got, want)
	}
	dns := fakedns.Start(t, "")
	sink := testenv.StartSink(t)
	milterAddr, adminAddr, unsubAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{MilterAddr: "inet:" + milterAddr, RelayTo: sink.Addr()})
	_, pfPort, _ := net.SplitHostPort(pf.SMTPAddr())

	// A fresh folder an unprivileged user owns.
	base, err := os.MkdirTemp("", "aupg-firstrun-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(base, "work")
	uid := os.Getuid()
	var cred *syscall.Credential
	if uid == 0 {
		uid = 65534
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	bin := filepath.Join(base, "aupguard")
	copyFile(t, buildBinary(t), bin, 0o755)
	if err := os.MkdirAll(filepath.Join(work, "configs"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../configs/aupguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, r := range [][2]string{
		// The example's own listeners, moved to free ports only (other
		// tests run beside this one): the milter stays loopback TCP, which
		// any user can open, as README's first run says.
		{"  listen: inet:127.0.0.1:8891\n", "  listen: inet:" + milterAddr + "\n"},
		{"listen: 127.0.0.1:8892", "listen: " + adminAddr},
		{"listen: 127.0.0.1:8893", "listen: " + unsubAddr},
		{"  servers: []", fmt.Sprintf("  servers: [%q]", dns.Addr())},
		{"    port: 25\n", "    port: " + pfPort + "\n"},
		// README step 3: list your customers (here: the test's client).
		{"networks: [198.51.100.0/28]", "networks: [198.51.100.0/28, 127.0.0.2/32]"},
		// docs/reputation.md, Debian 12: Postfix's own maillog_file.
		{`    source: ""`, fmt.Sprintf("    source: %q", pf.LogPath())},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("configs/aupguard.yaml no longer has %q", r[0])
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	if err := os.WriteFile(filepath.Join(work, "configs", "aupguard.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "../../configs/message.eml", filepath.Join(work, "configs", "message.eml"), 0o644)
	if cred != nil {
		for _, p := range []string{work, filepath.Join(work, "configs"), filepath.Join(work, "configs", "aupguard.yaml"), filepath.Join(work, "configs", "message.eml")} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	command := func(args []string) *exec.Cmd {
		c := exec.Command(bin, args...)
		c.Dir = work
		c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + work}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return c
	}
	run := func(args []string) (string, string) {
		t.Helper()
		c := command(args)
		var out, errb strings.Builder
		c.Stdout, c.Stderr = &out, &errb
		start := time.Now()
		if err := c.Run(); err != nil {
			t.Fatalf("aupguard %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		t.Logf("aupguard %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
		return out.String(), errb.String()
	}
	var serveLog *syncBuf
	tokenFile := filepath.Join(work, "state", "admin.token")
	for i, args := range steps {
		switch {
		case background[i]:
			if args[0] != "serve" {
				t.Fatalf("README runs %q in the background; only serve is expected there", args[0])
			}
			c := command(args)
			serveLog = &syncBuf{}
			c.Stderr = serveLog
			start := time.Now()
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			t.Cleanup(func() {
				_ = c.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					_ = c.Process.Kill()
					<-done
				}
				if t.Failed() {
					t.Logf("serve's log:\n%s", serveLog.String())
				}
			})
			waitFor(t, "the gateway's milter and admin listeners", func() bool {
				select {
				case <-done:
					t.Fatalf("serve exited:\n%s", serveLog.String())
				default:
				}
				for _, a := range []string{milterAddr, adminAddr} {
					c, err := net.Dial("tcp", a)
					if err != nil {
						return false
					}
					c.Close()
				}
				return true
			})
			t.Logf("aupguard serve: listening after %v", time.Since(start).Round(time.Millisecond))
			checkTokenCreated(t, tokenFile, uid, serveLog.String())
			checkVerdictsThroughPostfix(t, pf, sink, serveLog)
		case args[0] == "check-config":
			out, _ := run(args)
			if !strings.Contains(out, "OK, effective config follows") {
				t.Fatalf("check-config:\n%s", out)
			}
			if strings.Contains(out, ": null") {
				t.Errorf("check-config's effective config prints null:\n%s", grepLines(out, ": null"))
			}
		case args[0] == "customer":
			out, _ := run(args)
			if !strings.Contains(out, "acme") {
				t.Fatalf("customer list:\n%s", out)
			}
		case args[0] == "explain":
			out, _ := run(args)
			for _, want := range []string{"customer acme (mode monitor)", "verdict: accept"} {
				if !strings.Contains(out, want) {
					t.Errorf("explain lacks %q:\n%s", want, out)
				}
			}
		case args[0] == "report":
			before := len(sink.Messages())
			out, errOut := run(args)
			if !strings.Contains(out, "sent 2 of 2 report(s)") || strings.Contains(errOut, "warning") {
				t.Fatalf("report -mail:\nstdout:\n%s\nstderr:\n%s", out, errOut)
			}
			msgs, err := sink.WaitFor(before+2, 60*time.Second)
			if err != nil {
				t.Fatalf("the reports did not come through Postfix: %v\nPostfix log:\n%s\nserve's log:\n%s", err, pf.Log(), serveLog.String())
			}
			for _, m := range msgs[before:] {
				if m.From != "postmaster@provider.example" {
					t.Errorf("report mail from %q", m.From)
				}
			}
			if !strings.Contains(serveLog.String(), `"finding":"provider_mail"`) {
				t.Errorf("the report mail was not recognised as the gateway's own:\n%s", serveLog.String())
			}
		default:
			t.Fatalf("no expectation for README step %q", args)
		}
	}
}

// checkTokenCreated: serve wrote the admin token 0600, owned by the user
// running it, and logged the file but not the token.
func checkTokenCreated(t *testing.T, file string, uid int, log string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	if fi.Mode().Perm() != 0o600 || int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("admin token %s: mode %v uid %d, want 0600 owned by %d", file, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, uid)
	}
	tok, _ := os.ReadFile(file)
	if len(strings.TrimSpace(string(tok))) < 32 {
		t.Errorf("admin token %q is short", tok)
	}
	if !strings.Contains(log, "admin token created") || !strings.Contains(log, file) && !strings.Contains(log, "state/admin.token") {
		t.Errorf("serve did not log where the token is:\n%s", log)
	}
	if strings.Contains(log, strings.TrimSpace(string(tok))) {
		t.Errorf("serve logged the admin token")
	}
}

// checkVerdictsThroughPostfix: an unidentified client is refused at MAIL;
// the example customer's forged From is logged as a reject it would give,
// and the mail goes through (monitor mode).
func checkVerdictsThroughPostfix(t *testing.T, pf *testenv.Postfix, sink *testenv.Sink, log *syncBuf) {
	t.Helper()
	msg := func(from string) []byte {
		return []byte("From: " + from + "\r\nTo: bob@example.org\r\nSubject: first run\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@acme.example>\r\n\r\nHello.\r\n")
	}
	res, err := testenv.SendMail(pf.SMTPAddr(), testenv.SendOptions{LocalAddr: "127.0.0.1", From: "a@stranger.example", To: []string{"bob@example.org"}, Data: msg("a@stranger.example")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mail == nil || res.Mail.Code != 550 || !strings.Contains(res.Mail.Text, "Relay access denied") {
		t.Errorf("unidentified client through Postfix: %s", res)
	}
	before := len(sink.Messages())
	res, err = testenv.SendMail(pf.SMTPAddr(), testenv.SendOptions{LocalAddr: "127.0.0.2", From: "billing@acme.example", To: []string{"bob@example.org"}, Data: msg("ceo@bank.example")})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Delivered() {
		t.Fatalf("the customer's mail in monitor mode was not accepted: %s", res)
	}
	if _, err := sink.WaitFor(before+1, 60*time.Second); err != nil {
		t.Fatalf("the customer's mail did not come through: %v\n%s", err, pf.Log())
	}
	// A hard bounce: Postfix logs it to its maillog_file (postlogd, mode
	// 0644), which the unprivileged gateway follows and counts.
	sink.RefuseRcpt(func(to string) *smtp.SMTPError {
		if strings.HasPrefix(to, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	res, err = testenv.SendMail(pf.SMTPAddr(), testenv.SendOptions{LocalAddr: "127.0.0.2", From: "billing@acme.example", To: []string{"gone@example.org"}, Data: msg("billing@acme.example")})
	if err != nil || !res.Delivered() {
		t.Fatalf("mail to gone@: %v %s", err, res)
	}
	waitFor(t, "the bounce read from Postfix's maillog_file", func() bool {
		return strings.Contains(log.String(), `"msg":"delivery result"`) && strings.Contains(log.String(), `"class":"hard"`)
	})
	found := false
	for _, l := range strings.Split(log.String(), "\n") {
		var d map[string]any
		if json.Unmarshal([]byte(l), &d) != nil || d["msg"] != "decision" || d["customer"] != "acme" || d["stage"] != "eom" {
			continue
		}
		found = found || d["effective"] == "accept" && d["action"] != "accept" && d["mode"] == "monitor"
	}
	if !found {
		t.Errorf("no monitor-mode decision for the forged From:\n%s", log.String())
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
