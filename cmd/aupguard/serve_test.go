package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/sysmon"
)

// syncBuf is a goroutine-safe buffer for a child's stderr.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary builds the aupguard binary once for the tests of this run.
func buildBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aupguard-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "aupguard")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// served is a running `aupguard serve` of a test.
type served struct {
	cmd    *exec.Cmd
	stderr *syncBuf
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, once done is closed
}

// startServe runs bin serve -config cfgPath, with env added to the test's
// environment, and waits until its milter listens on addr. The process is
// killed at the end of the test if it still runs.
func startServe(t testing.TB, bin, cfgPath, addr string, env ...string) *served {
	t.Helper()
	s := &served{cmd: exec.Command(bin, "serve", "-config", cfgPath), stderr: &syncBuf{}, done: make(chan struct{})}
	if len(env) > 0 {
		s.cmd.Env = append(os.Environ(), env...)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("serve's log:\n%s", s.stderr.String())
		}
	})
	waitFor(t, "the milter to listen", func() bool {
		select {
		case <-s.done:
			t.Fatalf("serve exited before listening: %v", s.err)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// procEnv is the environment of a running process (Linux /proc).
func procEnv(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestServeRuntimeSetting runs the real binary under the environments an
// operator may give it: the config's runtime.sysmon (awake by default) makes
// serve execute itself again with GODEBUG's schedtrace only when the
// environment lacks it (the shared harness's plain start); the service's
// environment (the systemd unit, the container image) starts without a
// re-exec; an operator's own schedtrace stands; "default" changes nothing.
// Each start logs one runtime line saying which.
func TestServeRuntimeSetting(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	for _, tc := range []struct {
		name, runtime, godebug string
		want, source           string
	}{
		{"no GODEBUG: re-exec", "", "", sysmon.Setting, sysmon.SourceReexec},
		{"other settings kept beside it", "", "madvdontneed=1", "madvdontneed=1," + sysmon.Setting, sysmon.SourceReexec},
		{"the service's environment: no re-exec", "", sysmon.Setting, sysmon.Setting, sysmon.SourceEnvironment},
		{"the operator's schedtrace stands", "", "schedtrace=0", "schedtrace=0", sysmon.SourceEnvironment},
		{"runtime default: nothing changes", "runtime: {sysmon: default}\n", "", "", sysmon.SourceRuntime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := ln.Addr().String()
			ln.Close()
			cfgPath := filepath.Join(dir, "aupguard.yaml")
			os.WriteFile(cfgPath, []byte(fmt.Sprintf("milter: {listen: \"inet:%s\"}\noptout: {unsubscribe: {listen: \"off\"}}\n%s", addr, tc.runtime)), 0o600)
			s := startServe(t, bin, cfgPath, addr, "GODEBUG="+tc.godebug)
			env := procEnv(t, s.cmd.Process.Pid)
			if got := env["GODEBUG"]; got != tc.want {
				t.Errorf("GODEBUG=%q, want %q", got, tc.want)
			}
			if _, marked := env["AUPGUARD_SYSMON_REEXEC"]; marked != (tc.source == sysmon.SourceReexec) {
				t.Errorf("executed again: %v, want %v", marked, tc.source == sysmon.SourceReexec)
			}
			line := fmt.Sprintf(`"msg":"runtime","sysmon":%q,"godebug":%q,"source":%q`, map[bool]string{true: "default", false: "awake"}[tc.runtime != ""], tc.want, tc.source)
			waitFor(t, "the runtime line", func() bool { return strings.Contains(s.stderr.String(), `"msg":"runtime"`) })
			if log := s.stderr.String(); !strings.Contains(log, line) || strings.Count(log, `"msg":"runtime"`) != 1 {
				t.Errorf("want one runtime line with %s", line)
			}
		})
	}
}

// TestServeSignals runs the real binary: SIGHUP with a broken config is
// refused while an MTA session stays open and carries on; SIGTERM waits for
// the open session to finish its message before the process exits.
func TestServeSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	good := fmt.Sprintf("milter: {listen: \"inet:%s\", shutdown_timeout: 20s}\nlog: {format: text}\noptout: {unsubscribe: {listen: \"off\"}}\nchain: [sender_identity]\n"+
		"customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n", addr)
	os.WriteFile(cfgPath, []byte(good), 0o600)
	srv := startServe(t, bin, cfgPath, addr)
	cmd, stderr := srv.cmd, srv.stderr

	// The process that listens is the one started (same PID), re-executed
	// with the runtime's monitor kept awake (package sysmon).
	if env := procEnv(t, cmd.Process.Pid); !strings.Contains(env["GODEBUG"], sysmon.Setting) {
		t.Errorf("serve runs with GODEBUG=%q, want %s in it", env["GODEBUG"], sysmon.Setting)
	}

	// An MTA session, open mid-transaction.
	cs, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cs.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
	cs.Helo("c")
	if act, err := cs.Mail("a@acme.example", ""); err != nil || act.StopProcessing() {
		t.Fatalf("mail: %v %v", act, err)
	}

	// SIGHUP with a broken config: refused, logged with its place.
	os.WriteFile(cfgPath, []byte("milter: {listen: \"inet:"+addr+"\"}\ncustomers: [{id: x, domains: [\"bad domain\"], networks: [nope]}]\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refused reload", func() bool { return strings.Contains(stderr.String(), "reload refused") })
	if !strings.Contains(stderr.String(), "line=2") {
		t.Errorf("reload error lacks its line:\n%s", stderr.String())
	}
	if act, err := cs.Rcpt("b@example.org", ""); err != nil || act.StopProcessing() {
		t.Fatalf("session broken by the reload: %v %v", act, err)
	}

	// SIGTERM while the message is still open: the process waits for it.
	cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "shutdown to start", func() bool { return strings.Contains(stderr.String(), "shutting down") })
	select {
	case <-srv.done:
		t.Fatalf("exited with a session in flight: %v\n%s", srv.err, stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
	cs.DataStart()
	cs.HeaderField("From", " <a@acme.example>", nil)
	cs.HeaderEnd()
	_, act, err := cs.BodyReadFrom(strings.NewReader("hi\r\n"))
	if err != nil || act.Type != gm.ActionAccept {
		t.Fatalf("in-flight message not finished during shutdown: %v %v", act, err)
	}
	cs.Close()
	select {
	case <-srv.done:
		if srv.err != nil {
			t.Fatalf("exit: %v\n%s", srv.err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("did not exit after the last session closed\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "aupguard stopped") {
		t.Fatalf("no clean stop:\n%s", stderr.String())
	}
}

// TestReloadRefusesBadNamesAndChains runs the real binary: a SIGHUP with a
// misspelled finding or an impossible chain is refused with its line, and
// the running config stays in force (sender_identity still refuses a
// foreign MAIL FROM); a good config after them is taken.
func TestReloadRefusesBadNamesAndChains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "aupguard")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	head := fmt.Sprintf("milter: {listen: \"inet:%s\"}\nlog: {format: text}\noptout: {unsubscribe: {listen: \"off\"}}\n", addr)
	cust := "customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n"
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfgPath, []byte(head+"chain: [sender_identity]\n"+cust), 0o600)
	srv := startServe(t, bin, cfgPath, addr)
	cmd, stderr := srv.cmd, srv.stderr
	// mailFrom reports whether MAIL FROM with a domain acme does not own
	// is refused.
	refused := func() bool {
		t.Helper()
		cs, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		cs.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
		cs.Helo("c")
		act, err := cs.Mail("a@other.example", "")
		if err != nil {
			t.Fatal(err)
		}
		return act.StopProcessing()
	}
	if !refused() {
		t.Fatal("a foreign MAIL FROM is accepted before any reload")
	}
	bad := []struct{ name, body, want, line string }{
		{"misspelled finding", "chain: [sender_identity]\nchecks:\n  sender_identity:\n    findings: {mail_from_domain_not_ownd: accept}\n" + cust,
			"did you mean mail_from_domain_not_owned?", "line=7"},
		{"impossible chain", "chain: [sender_identity, dmarc, dkim, spf]\nchecks:\n  sender_identity: {enabled: false}\n" + cust,
			`needs the results of \"spf\", which runs after it`, "line=4"},
	}
	for _, b := range bad {
		os.WriteFile(cfgPath, []byte(head+b.body), 0o600)
		cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, b.name+" refused", func() bool { return strings.Contains(stderr.String(), b.want) })
		var line string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(l, b.want) {
				line = l
			}
		}
		if !strings.Contains(line, "reload refused: config error") || !strings.Contains(line, " "+b.line+" ") {
			t.Errorf("%s: want a refusal at %s, got:\n%s", b.name, b.line, line)
		}
		if !refused() {
			t.Fatalf("%s replaced the working config", b.name)
		}
	}
	// A good config is still taken after the refusals.
	os.WriteFile(cfgPath, []byte(head+"chain: [sender_identity]\nchecks:\n  sender_identity:\n    findings: {mail_from_domain_not_owned: accept}\n"+cust), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the good reload", func() bool { return strings.Contains(stderr.String(), "config reloaded") })
	if refused() {
		t.Fatal("the good config was not taken: a foreign MAIL FROM is still refused")
	}
}

// TestServiceEnvironmentsKeepSysmonAwake: the systemd unit and the
// container image start serve with the runtime setting in its environment,
// so that under them serve never executes itself again.
func TestServiceEnvironmentsKeepSysmonAwake(t *testing.T) {
	for _, tc := range []struct{ file, line string }{
		{"../../configs/aupguard.service", "Environment=GODEBUG=" + sysmon.Setting},
		{"../../Dockerfile", "ENV GODEBUG=" + sysmon.Setting},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, l := range strings.Split(string(b), "\n") {
				found = found || strings.TrimSpace(l) == tc.line
			}
			if !found {
				t.Errorf("%s lacks the line %q", tc.file, tc.line)
			}
		})
	}
}

// TestCheckConfigShowsRuntime: the effective config that check-config
// prints carries runtime.sysmon (awake when unset), and a value other than
// awake or default is refused at its line.
func TestCheckConfigShowsRuntime(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		code       int
		want       string
	}{
		{"unset: awake", "", 0, "runtime:\n    sysmon: awake\n"},
		{"default", "runtime: {sysmon: default}\n", 0, "runtime:\n    sysmon: default\n"},
		{"unknown", "runtime:\n  sysmon: sleepy\n", 1, `aupguard.yaml:3: runtime.sysmon: want awake or default, got "sleepy"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "aupguard.yaml")
			if err := os.WriteFile(path, []byte("optout: {unsubscribe: {listen: \"off\"}}\n"+tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			code := runMain([]string{"check-config", "-config", path}, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
				t.Errorf("exit %d, want %d with %q in:\n%s%s", code, tc.code, tc.want, out.String(), errOut.String())
			}
		})
	}
}
