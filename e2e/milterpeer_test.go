package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aupguard/aupguard/internal/checks/reputation"
	"github.com/aupguard/aupguard/internal/engine/daemon"
	"github.com/aupguard/aupguard/internal/testkit/gwtest"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestMain lets the milter peer tests run this binary as another Unix
// user: the hostile local process posing as Postfix.
func TestMain(m *testing.M) {
	testenv.HelperMain()
	os.Exit(m.Run())
}

// counterValue reads one counter of the gateway's metrics (labels as
// name=value pairs); -1 when absent.
func counterValue(t *testing.T, d *daemon.Daemon, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := d.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// TestForgedRelabellingThroughPostfix replays a relabelling attack on a
// TCP loopback listener: customer alpha's message gets queue id Q from
// real Postfix; a local process then sends a milter transaction with
// queue id Q and customer bravo's login, hoping that alpha's hard bounce
// is counted for bravo. As another user it is closed at once; as an
// allowed peer (root) it cannot overwrite the queue id's owner. The
// bounce is counted for alpha; bravo's counts stay 0.
func TestForgedRelabellingThroughPostfix(t *testing.T) {
	logDir, err := os.MkdirTemp("", "aupg-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(logDir) })
	if err := os.Chmod(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	maillog := filepath.Join(logDir, "maillog")
	cfg := fmt.Sprintf(`
log: {format: json, level: info}
chain: [bulk_mail, bounce_rate]
checks:
  bulk_mail: {action: accept}
milter: {max_connections: 8}
customers:
  - id: alpha
    networks: [127.0.0.41/32]
    domains: [alpha.example]
  - id: bravo
    logins: [bravo]
    domains: [bravo.example]
  - id: charlie
    networks: [127.0.0.42/32]
    domains: [charlie.example]
reputation:
  deliveries: {source: %q, from_start: true, poll: 50ms}
  bounces: {window: 1h, min_volume: 1, warn: 0.05, act: 0.10, outcome: defer_all}
`, maillog)
	env := gwtest.Start(t, gwtest.Options{Config: cfg, ExtraMainCF: map[string]string{
		"maillog_file": maillog, "maillog_file_prefixes": logDir,
	}})
	svc, _, _ := reputation.Running(env.Daemon.Host())
	if svc == nil {
		t.Fatal("no reputation service")
	}
	addr := env.Daemon.MilterAddr().String()
	// The receiver defers the message first, so that it stays in
	// Postfix's queue while the forgeries run.
	env.Sink.RefuseRcpt(func(to string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	})
	r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.41", From: "news@alpha.example", To: []string{"gone1@example.org"},
		Data: msg("news@alpha.example", "gone1@example.org", "alpha's message")})
	if !r.Delivered() {
		t.Fatalf("alpha's message refused:\n%s", r)
	}
	var qid string
	for _, d := range env.WaitDecisions(1, 10*time.Second) {
		if d["customer"] == "alpha" && d["stage"] == "eom" {
			qid, _ = d["queue_id"].(string)
		}
	}
	if qid == "" {
		t.Fatalf("no end-of-message decision with a queue id for alpha:\n%s", env.Log())
	}
	forge := func(login string) testenv.ForgeResult {
		t.Helper()
		args := testenv.ForgeArgs("tcp", addr, qid, "bravo", "x@bravo.example", "gone1@example.org")
		out := testenv.RunHelperAs(t, login, nil, testenv.HelperForge, args...)
		var fr testenv.ForgeResult
		if err := json.Unmarshal(out, &fr); err != nil {
			t.Fatalf("helper output %q: %v", out, err)
		}
		return fr
	}
	bravoDecisions := func() int {
		n := 0
		for _, d := range env.Decisions() {
			if d["customer"] == "bravo" {
				n++
			}
		}
		return n
	}
	t.Run("another user's forged transactions are closed at once, 50 times", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			if fr := forge("nobody"); fr.Stage != "negotiate" || fr.Error == "" {
				t.Fatalf("forgery %d: %+v, want closed at negotiation", i, fr)
			}
		}
		if n := bravoDecisions(); n != 0 {
			t.Fatalf("%d decisions for bravo: a forged transaction reached the policy (quota spent)", n)
		}
		if v := counterValue(t, env.Daemon, "aupguard_milter_peers_refused_total", "reason", "user"); v != 50 {
			t.Fatalf("aupguard_milter_peers_refused_total{reason=user} = %v, want 50", v)
		}
		if n := strings.Count(env.Log(), "milter connection refused: peer not allowed"); n < 1 {
			t.Fatalf("no refusal line:\n%s", env.Log())
		}
	})
	t.Run("an allowed peer's second claim of the queue id keeps the first owner", func(t *testing.T) {
		fr := forge("root")
		if fr.Stage != "done" {
			t.Fatalf("root's transaction: %+v", fr)
		}
		if v := counterValue(t, env.Daemon, "aupguard_queue_id_clashes_total"); v != 1 {
			t.Fatalf("aupguard_queue_id_clashes_total = %v, want 1 (forgery %+v)\n%s", v, fr, env.Log())
		}
		if !strings.Contains(env.Log(), `"event":"queue_id_clash","queue_id":"`+qid+`","holder":"alpha","claimed_by":"bravo"`) {
			t.Fatalf("no clash line:\n%s", env.Log())
		}
	})
	t.Run("the hard bounce of alpha's message counts for alpha, bravo +0", func(t *testing.T) {
		env.Sink.RefuseRcpt(func(to string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected: User unknown"}
		})
		deadline := time.Now().Add(60 * time.Second)
		for {
			a, err := svc.Standing(context.Background(), "alpha")
			if err != nil {
				t.Fatal(err)
			}
			if a.Hard >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alpha's bounce never counted: %+v\n%s", a.Counts, env.Postfix.Log())
			}
			env.Postfix.Flush()
			time.Sleep(200 * time.Millisecond)
		}
		a, _ := svc.Standing(context.Background(), "alpha")
		b, _ := svc.Standing(context.Background(), "bravo")
		if a.Hard != 1 || b.Final() != 0 || b.Deferred != 0 || b.Level == reputation.LevelAct {
			t.Fatalf("alpha %+v, bravo %+v: want alpha 1 hard, bravo nothing", a.Counts, b.Counts)
		}
	})
	t.Run("600 idle connections of another user never hold a slot; Postfix gets no 451", func(t *testing.T) {
		env.Sink.RefuseRcpt(nil)
		before := counterValue(t, env.Daemon, "aupguard_milter_peers_refused_total", "reason", "user")
		cmd := testenv.HelperAs(t, "nobody", nil, testenv.HelperFlood, "-network", "tcp", "-addr", addr, "-n", "600")
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stdin.Close(); cmd.Wait() }()
		var fr testenv.FloodResult
		if err := json.NewDecoder(stdout).Decode(&fr); err != nil {
			t.Fatalf("flood helper: %v\n%s", err, stderr.String())
		}
		if fr.Dialed != 600 || fr.Closed != 600 {
			t.Fatalf("flood %+v, want 600 connections, all closed", fr)
		}
		// The flood's 600 sockets are still open on its side (8 slots):
		// real mail goes through.
		for i := range 3 {
			to := fmt.Sprintf("user%d@example.org", i)
			if r := env.Send(testenv.SendOptions{LocalAddr: "127.0.0.42", From: "news@charlie.example", To: []string{to},
				Data: msg("news@charlie.example", to, "during the flood")}); !r.Delivered() {
				t.Fatalf("message %d during the flood:\n%s", i, r)
			}
		}
		if v := counterValue(t, env.Daemon, "aupguard_milter_peers_refused_total", "reason", "user"); v-before != 600 {
			t.Fatalf("refused %v more, want 600", v-before)
		}
		if strings.Contains(env.Postfix.Log(), "milter") && strings.Contains(env.Postfix.Log(), "451 4.7.1 Service unavailable") {
			t.Fatalf("Postfix applied milter_default_action:\n%s", env.Postfix.Log())
		}
	})
}

// TestMilterSocketThroughPostfix runs the shipped layout: the gateway's
// Unix socket in a directory under Postfix's queue directory, group
// postfix, mode 0660; Postfix names it relative to its queue directory
// (unix:aupguard/milter.sock), as a chrooted smtpd must. Mail flows; a
// process of another user cannot open the socket.
func TestMilterSocketThroughPostfix(t *testing.T) {
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{MilterAddr: "unix:aupguard/milter.sock", RelayTo: sink.Addr()})
	path := filepath.Join(pf.QueueDir(), "aupguard", "milter.sock")
	cfg, err := gwtest.WithListen(`
log: {format: json}
chain: [sender_identity]
customers:
  - {id: webhost, networks: [127.0.0.5/32], domains: [webhost.example]}
`, "unix:"+path)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "aupguard.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	var log testenv.LogBuffer
	d, err := daemon.New(daemon.Options{ConfigPath: cfgPath, LogOutput: &log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("gateway log:\n%s", log.String())
		}
	})
	t.Run("the socket is 0660, group postfix", func(t *testing.T) {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Fatalf("socket mode %v", fi.Mode())
		}
		if !strings.Contains(log.String(), `"msg":"milter socket ready"`) || !strings.Contains(log.String(), `"group":"postfix"`) {
			t.Fatalf("log:\n%s", log.String())
		}
	})
	t.Run("Postfix reaches it: mail is delivered", func(t *testing.T) {
		r, err := testenv.SendMail(pf.SMTPAddr(), testenv.SendOptions{LocalAddr: "127.0.0.5", From: "a@webhost.example", To: []string{"x@example.org"},
			Data: msg("a@webhost.example", "x@example.org", "through the socket")})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Delivered() {
			t.Fatalf("refused:\n%s\n%s", r, pf.Log())
		}
		if _, err := sink.WaitFor(1, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), `"customer":"webhost"`) {
			t.Fatalf("no decision for webhost:\n%s", log.String())
		}
	})
	t.Run("another user cannot open the socket", func(t *testing.T) {
		out := testenv.RunHelperAs(t, "nobody", nil, testenv.HelperForge, testenv.ForgeArgs("unix", path, "Q1", "webhost", "a@webhost.example", "x@example.org")...)
		var fr testenv.ForgeResult
		if err := json.Unmarshal(out, &fr); err != nil {
			t.Fatalf("helper output %q: %v", out, err)
		}
		if fr.Errno != "EACCES" {
			t.Fatalf("nobody: %+v, want EACCES", fr)
		}
	})
}
