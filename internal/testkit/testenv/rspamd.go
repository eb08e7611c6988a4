package testenv

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rspamdStartTimeout bounds how long a private rspamd may take to answer
// /ping (about 2 s with the small TLD list StartRspamd gives it).
const rspamdStartTimeout = 60 * time.Second

// RspamdOptions configures [StartRspamd].
type RspamdOptions struct {
	// Lua is the rspamd Lua the scanner loads: the test's own rules (the
	// stock rules are not loaded, so that scores are the test's alone and
	// start-up is quick). Required.
	Lua string
	// Reject and AddHeader are rspamd's action thresholds (default 15, 6).
	Reject, AddHeader float64
}

// Rspamd is a private rspamd normal worker on a free port of 127.0.0.1,
// with a minimal config in a temporary directory: no stock rules, DNS to a
// closed loopback port (nothing leaves the machine), a four-entry public
// suffix list.
type Rspamd struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *bytes.Buffer
}

// StartRspamd starts rspamd and waits until it answers /ping; it is killed
// at cleanup. Under CI=true a missing rspamd fails the test.
func StartRspamd(t testing.TB, opts RspamdOptions) *Rspamd {
	t.Helper()
	Need(t, "rspamd")
	if opts.Lua == "" {
		t.Fatal("testenv: StartRspamd needs the test's Lua rules")
	}
	if opts.Reject == 0 {
		opts.Reject = 15
	}
	if opts.AddHeader == 0 {
		opts.AddHeader = 6
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &Rspamd{t: t, bin: mustBin(t, "rspamd"), dir: dir, conf: filepath.Join(dir, "rspamd.conf"), port: ports[0]}
	files := map[string]string{
		"rules.lua": opts.Lua,
		"tld.dat":   "com\norg\nnet\nexample\n",
		"rspamd.conf": fmt.Sprintf(`options {
  pidfile = "%[1]s/rspamd.pid";
  url_tld = "%[1]s/tld.dat";
  hs_cache_dir = "%[1]s";
  tempdir = "%[1]s";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }
}
logging { type = "file"; filename = "%[1]s/rspamd.log"; level = "info"; }
actions { reject = %[2]v; add_header = %[3]v; }
worker "normal" { bind_socket = "127.0.0.1:%[4]d"; count = 1; }
lua = "%[1]s/rules.lua";
`, dir, opts.Reject, opts.AddHeader, r.port),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.Kill)
	r.Start()
	return r
}

// URL is the worker's base URL (the content: section's rspamd.url).
func (r *Rspamd) URL() string { return "http://127.0.0.1:" + strconv.Itoa(r.port) }

// Log returns the end of rspamd's log.
func (r *Rspamd) Log() string { return readTail(filepath.Join(r.dir, "rspamd.log"), 40) }

// Start (re)starts rspamd in the foreground and waits for /ping.
func (r *Rspamd) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	// -f: foreground; -i: allowed to run as root (the tests' user).
	cmd := exec.Command(r.bin, "-c", r.conf, "-f", "-i")
	cmd.SysProcAttr = childAttr()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // its workers are killed with it (Kill)
	r.out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("testenv: starting rspamd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	deadline := time.Now().Add(rspamdStartTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if resp, err := client.Get(r.URL() + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			r.cmd = nil
			r.t.Fatalf("testenv: rspamd exited at start:\n%s", r.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("testenv: rspamd did not answer /ping within %s:\n%s", rspamdStartTimeout, r.Log())
		}
	}
}

// Kill kills rspamd's main process and its workers (its own process
// group, started by Start) and waits for it.
func (r *Rspamd) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}
