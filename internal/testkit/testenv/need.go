package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InstallScript is the repository-relative path of the script that installs
// the programs this package needs on a Debian machine.
const InstallScript = "scripts/install-test-deps.sh"

// extraBinDirs are searched after $PATH: Debian installs the Postfix and
// Cyrus SASL administration tools in sbin directories that are often missing
// from a non-root $PATH, and systemd's helpers (systemd-journal-remote)
// outside any $PATH.
var extraBinDirs = []string{"/usr/sbin", "/usr/bin", "/usr/lib/postfix/sbin", "/sbin", "/usr/lib/systemd", "/lib/systemd"}

// inCI reports whether missing prerequisites must fail the test rather than
// skip it.
func inCI() bool { return os.Getenv("CI") == "true" }

// Need makes sure every program in bins can be found on $PATH or in one of
// /usr/sbin, /usr/bin and /usr/lib/postfix/sbin. If one is missing, the test
// is skipped; when the environment variable CI is "true" it fails instead,
// with a message naming the install script.
func Need(t testing.TB, bins ...string) {
	t.Helper()
	var missing []string
	for _, b := range bins {
		if _, err := lookBin(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("testenv: required program(s) not found: %s (looked in $PATH and %s); run %s (as root) to install them",
		strings.Join(missing, ", "), strings.Join(extraBinDirs, ", "), InstallScript)
	unavailable(t, msg)
}

// needRoot skips (or, in CI, fails) a test that must run as root, e.g.
// because it starts a Postfix master daemon.
func needRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, fmt.Sprintf("testenv: %s must run as root (euid is %d)", what, os.Geteuid()))
	}
}

// unavailable skips, or in CI fails, the test with msg.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s [CI=true, so this is an error instead of a skip]", msg)
		return
	}
	t.Skip(msg)
}

// lookBin returns the absolute path of the program name.
func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range extraBinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not found in $PATH or %s", name, strings.Join(extraBinDirs, ", "))
}

// Bin returns the absolute path of a program already checked with Need.
func Bin(t testing.TB, name string) string {
	t.Helper()
	return mustBin(t, name)
}

// mustBin is lookBin for programs already checked with Need.
func mustBin(t testing.TB, name string) string {
	t.Helper()
	p, err := lookBin(name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago. All listeners are held open until every port is chosen, so the ports
// are distinct from each other.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns at most the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines omitted ...]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// readTail returns the last n lines of the file at path, or a note saying why
// it could not be read.
func readTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Sprintf("(no log file %s)", path)
		}
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) == 0 {
		return fmt.Sprintf("(log file %s is empty)", path)
	}
	return tail(string(b), n)
}
