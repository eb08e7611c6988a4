package testenv

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clamdStartTimeout bounds how long a private clamd may take to load its
// database and answer PING (a one-signature database loads in about a
// second; the official databases would take far longer and are never used).
const clamdStartTimeout = 30 * time.Second

// ClamdOptions configures [StartClamd].
type ClamdOptions struct {
	// Signatures maps a signature name to the bytes it matches anywhere in
	// a scanned file (written as an extended .ndb signature of target type
	// 0). At least one is needed: clamd refuses to start without a database.
	Signatures map[string][]byte
	// StreamMaxLength is clamd's StreamMaxLength in bytes (default 1 MiB).
	StreamMaxLength int64
}

// Clamd is a private clamd listening on a Unix socket in a temporary
// directory, with a database the test wrote (no signature download).
type Clamd struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	sock    string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartClamd starts clamd on its own config and database, waits until it
// answers PING, and kills it at cleanup. Under CI=true a missing clamd
// fails the test.
func StartClamd(t testing.TB, opts ClamdOptions) *Clamd {
	t.Helper()
	Need(t, "clamd")
	if len(opts.Signatures) == 0 {
		t.Fatal("testenv: StartClamd needs at least one signature")
	}
	if opts.StreamMaxLength == 0 {
		opts.StreamMaxLength = 1 << 20
	}
	// A short directory: a Unix socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	var ndb bytes.Buffer
	for name, pat := range opts.Signatures {
		fmt.Fprintf(&ndb, "%s:0:*:%s\n", name, hex.EncodeToString(pat))
	}
	if err := os.WriteFile(filepath.Join(db, "test.ndb"), ndb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Clamd{t: t, bin: mustBin(t, "clamd"), dir: dir, sock: filepath.Join(dir, "clamd.sock"),
		conf: filepath.Join(dir, "clamd.conf"), logPath: filepath.Join(dir, "clamd.log")}
	conf := strings.Join([]string{
		"LocalSocket " + c.sock,
		"LocalSocketMode 666",
		"DatabaseDirectory " + db,
		"TemporaryDirectory " + dir,
		"LogFile " + c.logPath,
		"LogVerbose yes",
		"Foreground yes",
		"PidFile " + filepath.Join(dir, "clamd.pid"),
		fmt.Sprintf("StreamMaxLength %d", opts.StreamMaxLength),
		"MaxThreads 4",
		"ScanMail yes",
		"ScanArchive yes",
		"",
	}, "\n")
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	c.Start()
	return c
}

// Addr is the socket as the content: section names it ("unix:/path").
func (c *Clamd) Addr() string { return "unix:" + c.sock }

// Log returns the end of clamd's log.
func (c *Clamd) Log() string { return readTail(c.logPath, 40) }

// Start (re)starts clamd and waits until it answers PING.
func (c *Clamd) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	_ = os.Remove(c.sock)
	cmd := exec.Command(c.bin, "-c", c.conf)
	cmd.SysProcAttr = childAttr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("testenv: starting clamd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.cmd, c.done = cmd, done
	deadline := time.Now().Add(clamdStartTimeout)
	for {
		if clamdPing(c.sock) == nil {
			return
		}
		select {
		case <-done:
			c.cmd = nil
			c.t.Fatalf("testenv: clamd exited at start:\n%s\n%s", tail(out.String(), 20), c.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testenv: clamd did not answer PING within %s:\n%s", clamdStartTimeout, c.Log())
		}
	}
}

// Kill kills clamd (SIGKILL) and waits for it to exit.
func (c *Clamd) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	c.cmd = nil
}

// clamdPing sends zPING and wants PONG.
func clamdPing(sock string) error {
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if got := strings.TrimRight(string(buf[:n]), "\x00\n"); got != "PONG" {
		return fmt.Errorf("clamd answered %q to PING", got)
	}
	return nil
}
