//go:build linux

package reputation

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// followChildEnv names the file the test binary follows when it is started
// as TestFollowUnprivileged's child.
const followChildEnv = "AUPG_FOLLOW_CHILD"

func TestMain(m *testing.M) {
	if p := os.Getenv(followChildEnv); p != "" {
		os.Exit(followChild(p))
	}
	os.Exit(m.Run())
}

// followChild follows p, printing "LINE text" for each line and its log
// (JSON) on standard output, until standard input ends.
func followChild(p string) int {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var mu sync.Mutex
	out := lockedWriter{&mu, os.Stdout}
	f := &Follower{Path: p, FromStart: true, Poll: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Log: slog.New(slog.NewJSONHandler(out, nil))}
	err := f.Run(ctx, func(line string) { fmt.Fprintf(out, "LINE %s\n", line) })
	if err != nil {
		fmt.Fprintf(out, "RUN %v\n", err)
		return 1
	}
	return 0
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestFollowUnprivileged: a reader running as an unprivileged user (nobody;
// the test binary runs as root, so the follower runs in a child process
// with dropped credentials) meets a rotated log it may not read (mode
// 0000, as between logrotate's create and its chmod): it says so once,
// keeps trying, and reads the new file from its start once it may.
func TestFollowUnprivileged(t *testing.T) {
	dir, err := os.MkdirTemp("", "aupg-follow-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mustDo(t, os.Chmod(dir, 0o755))
	p := filepath.Join(dir, "maillog")
	appendTo(t, p, "a\n")

	// The test binary's own directory is root's alone: a copy the child
	// can run.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "follow.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, os.WriteFile(bin, data, 0o755))

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), followChildEnv+"="+p)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	var seen []string
	waitFor := func(substr string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-got:
				if !ok {
					t.Fatalf("child ended before %q; output %q; stderr %s", substr, seen, stderr.String())
				}
				seen = append(seen, l)
				if strings.Contains(l, substr) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from the child; output %q", substr, seen)
			}
		}
	}
	waitFor("LINE a")
	// Rotation; the new file is root's and unreadable for a while.
	mustDo(t, os.Rename(p, p+".1"))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o000)
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, os.Chmod(p, 0o000))
	fmt.Fprint(f, "b\n")
	f.Close()
	waitFor(`"kind":"permission"`)
	mustDo(t, os.Chmod(p, 0o644))
	appendTo(t, p, "c\n")
	waitFor("LINE c")
	waitFor("delivery log readable again")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	for l := range got {
		seen = append(seen, l)
	}
	all := strings.Join(seen, "\n")
	if strings.Count(all, "delivery log unreadable") != 1 || strings.Count(all, "LINE ") != 3 || !strings.Contains(all, "LINE b") {
		t.Errorf("child output:\n%s", all)
	}
}
