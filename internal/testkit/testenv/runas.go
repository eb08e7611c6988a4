package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// helperEnv names the helper a re-executed test binary runs (see
// [HelperMain]).
const helperEnv = "AUPG_TESTENV_HELPER"

// helpers are the functions a re-executed test binary can run.
var helpers = map[string]func(args []string) int{}

// RegisterHelper makes fn runnable by [HelperAs] under name. Call it from
// an init function or TestMain of the test package, before [HelperMain].
func RegisterHelper(name string, fn func(args []string) int) { helpers[name] = fn }

// HelperMain runs the helper this process was started for and exits, when
// it was started by [HelperAs]; otherwise it returns at once. A test
// package that uses HelperAs calls it first in its TestMain.
func HelperMain() {
	name := os.Getenv(helperEnv)
	if name == "" {
		return
	}
	fn := helpers[name]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "testenv: no helper %q registered\n", name)
		os.Exit(2)
	}
	os.Exit(fn(os.Args[1:]))
}

// HelperAs returns a command that runs the registered helper name with args
// in a copy of the test binary, as the Unix user login (its uid, its
// primary group, plus groups), so that the process is what a hostile
// local user would run: nothing is shared with the test but the
// arguments. The copy is a hard link (or a copy) of the test binary in a
// directory every user can read, since the go tool's build directory is
// private; it is removed at cleanup. It needs root.
func HelperAs(t testing.TB, login string, groups []uint32, name string, args ...string) *exec.Cmd {
	t.Helper()
	needRoot(t, "running a helper as another user")
	u, err := user.Lookup(login)
	if err != nil {
		t.Fatalf("testenv: user %q: %v", login, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	bin := sharedBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = "/"
	// atexit_sleep_ms: a -race binary otherwise sleeps a second at exit.
	cmd.Env = []string{helperEnv + "=" + name, "PATH=/usr/bin:/bin", "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups},
	}
	return cmd
}

// sharedBinary links or copies the test binary into a directory every user
// can traverse.
func sharedBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "aupg-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(exe))
	if err := os.Link(exe, dst); err == nil {
		if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm()&0o005 == 0o005 {
			return dst
		}
		os.Remove(dst)
	}
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// RunHelperAs runs the helper to completion (see [HelperAs]) and returns
// its standard output; a failure to run it fails the test, with its
// standard error.
func RunHelperAs(t testing.TB, login string, groups []uint32, name string, args ...string) []byte {
	t.Helper()
	cmd := HelperAs(t, login, groups, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: helper %s as %s: %v\n%s", name, login, err, stderr.String())
	}
	return out
}
