package packaging

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// run runs a command and returns its combined output, failing the test
// with it when the command fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildDeb builds the package with the documented script.
func buildDeb(t *testing.T) string {
	t.Helper()
	out := run(t, nil, "../scripts/build-deb.sh", "1.2.3", t.TempDir())
	lines := strings.Split(strings.TrimSpace(out), "\n")
	deb := lines[len(lines)-1]
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build-deb.sh printed no package:\n%s", out)
	}
	return deb
}

// emptyRoot is a root with an empty dpkg database, as on a machine where
// nothing else is installed (dpkg --root). A machine has a resolv.conf.
func emptyRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, data := range map[string]string{"var/lib/dpkg/status": "", "var/lib/dpkg/available": "", "etc/resolv.conf": "nameserver 127.0.0.1\n"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// entries reads an /etc/passwd or /etc/group file, by name.
func entries(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		m[fs[0]] = fs
	}
	return m
}

// TestDebianPackageInstallsOnACleanRoot builds the .deb with
// scripts/build-deb.sh (nfpm), installs it with dpkg into an empty root
// (maintainer scripts run with DPKG_ROOT, as dpkg --root
// --force-script-chrootless does), and checks what a provider gets: the
// files and their modes, the conffile, the user and its groups
// (systemd-sysusers), the directories (systemd-tmpfiles), the unit
// (systemd-analyze verify, with the installed binary), and check-config
// of the installed config run inside the root as the aupguard user. Then
// a changed conffile survives a reinstall, and removal keeps it.
func TestDebianPackageInstallsOnACleanRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a package")
	}
	testenv.Need(t, "dpkg", "dpkg-deb", "systemd-sysusers", "systemd-tmpfiles", "systemd-analyze", "chroot")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("installing a package with dpkg needs root [CI=true]")
		}
		t.Skip("installing a package with dpkg needs root")
	}
	deb := buildDeb(t)

	info := run(t, nil, "dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: aupguard", "Version: 1.2.3", "Section: mail", "Recommends: postfix", " conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("package info lacks %q:\n%s", want, info)
		}
	}

	root := emptyRoot(t)
	dpkg := func(args ...string) string {
		return run(t, nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-confold"}, args...)...)
	}
	dpkg("-i", deb)

	files := []struct {
		path string
		mode os.FileMode
	}{
		{"usr/bin/aupguard", 0o755},
		{"etc/aupguard/aupguard.yaml", 0o644},
		{"usr/lib/systemd/system/aupguard.service", 0o644},
		{"usr/lib/sysusers.d/aupguard.conf", 0o644},
		{"usr/lib/tmpfiles.d/aupguard.conf", 0o644},
		{"usr/share/doc/aupguard/README.md", 0o644},
		{"usr/share/doc/aupguard/docs/config.md", 0o644},
		{"usr/share/doc/aupguard/docs/auth.md", 0o644},
		{"usr/share/doc/aupguard/examples/postfix/main.cf", 0o644},
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if fi.Mode().Perm() != f.mode || !fi.Mode().IsRegular() {
			t.Errorf("%s: mode %v, want %04o", f.path, fi.Mode(), f.mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: owned by %d:%d, want root", f.path, st.Uid, st.Gid)
		}
	}
	if cf, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/info/aupguard.conffiles")); err != nil || strings.TrimSpace(string(cf)) != "/etc/aupguard/aupguard.yaml" {
		t.Errorf("conffiles %q %v", cf, err)
	}

	// The user, from the package's sysusers.d entry.
	pw := entries(t, filepath.Join(root, "etc/passwd"))
	u, ok := pw["aupguard"]
	if !ok {
		t.Fatalf("no aupguard user in %s/etc/passwd", root)
	}
	if u[5] != "/var/lib/aupguard" || u[6] != "/usr/sbin/nologin" {
		t.Errorf("aupguard user %v: want home /var/lib/aupguard, shell nologin", u)
	}
	uid, _ := strconv.Atoi(u[2])
	gid, _ := strconv.Atoi(u[3])
	if uid == 0 || uid >= 1000 {
		t.Errorf("aupguard uid %d is not a system uid", uid)
	}
	gr := entries(t, filepath.Join(root, "etc/group"))
	if e, ok := gr["adm"]; !ok || !strings.Contains(","+e[3]+",", ",aupguard,") {
		t.Errorf("aupguard is not a member of adm: %v", e)
	}
	if e, ok := gr["postfix"]; ok && strings.Contains(","+e[3]+",", ",aupguard,") {
		t.Errorf("aupguard is a member of postfix (the socket directory's set-group-ID bit gives the group): %v", e)
	}
	// The unit's user and groups are the ones the package creates.
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/aupguard.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=aupguard\n", "Group=aupguard\n", "SupplementaryGroups=adm\n", "ExecStartPre=+/usr/bin/install -d -o aupguard -g postfix -m 2750 /var/spool/postfix/aupguard\n",
		"ExecStart=/usr/bin/aupguard serve", "Type=notify\n", "WatchdogSec=", "UMask=0077\n",
		"Documentation=file:///usr/share/doc/aupguard/README.md file:///usr/share/doc/aupguard/docs/config.md\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("installed unit lacks %q", want)
		}
	}
	if strings.Contains(string(unit), "/usr/local") {
		t.Error("installed unit refers to /usr/local")
	}

	// The directories, from the tmpfiles.d entry.
	for _, d := range []struct {
		path string
		mode os.FileMode
		gid  int
	}{{"var/lib/aupguard", 0o750, gid}, {"run/aupguard", 0o750, gid}, {"etc/aupguard/dkim", 0o700, gid}} {
		fi, err := os.Stat(filepath.Join(root, d.path))
		if err != nil {
			t.Errorf("%s: %v", d.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode().Perm() != d.mode || int(st.Uid) != uid || int(st.Gid) != d.gid {
			t.Errorf("%s: %v %d:%d, want dir %04o %d:%d", d.path, fi.Mode(), st.Uid, st.Gid, d.mode, uid, d.gid)
		}
	}

	// The unit verifies, pointed at the installed binary.
	vdir := t.TempDir()
	vunit := strings.ReplaceAll(string(unit), "/usr/bin/aupguard", filepath.Join(root, "usr/bin/aupguard"))
	if err := os.WriteFile(filepath.Join(vdir, "aupguard.service"), []byte(vunit), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, []string{"SYSTEMD_LOG_LEVEL=warning"}, "systemd-analyze", "verify", filepath.Join(vdir, "aupguard.service"))

	// check-config of the installed config, in the root, as the user the
	// unit runs it as.
	spec := fmt.Sprintf("--userspec=%d:%d", uid, gid)
	out := run(t, nil, "chroot", spec, root, "/usr/bin/aupguard", "check-config", "-config", "/etc/aupguard/aupguard.yaml")
	if !strings.Contains(out, "OK") {
		t.Errorf("check-config of the installed config:\n%s", out)
	}
	// Installed, the milter listens on Postfix's Unix socket (the unit
	// makes its directory), and the Postfix example names it; the
	// checkout's example listens on loopback TCP for a first run as any
	// user.
	for file, line := range map[string]string{
		"etc/aupguard/aupguard.yaml":                      "\n  listen: unix:/var/spool/postfix/aupguard/milter.sock\n",
		"usr/share/doc/aupguard/examples/postfix/main.cf": "\nsmtpd_milters = unix:aupguard/milter.sock\n",
	} {
		if b, err := os.ReadFile(filepath.Join(root, file)); err != nil || !strings.Contains(string(b), line) || strings.Contains(string(b), "\n  listen: inet:127.0.0.1:8891") || strings.Contains(string(b), "\nsmtpd_milters = inet:") {
			t.Errorf("installed %s does not listen on / name the Unix socket (%q): %v\n%s", file, strings.TrimSpace(line), err, b)
		}
	}
	if v := run(t, nil, "chroot", spec, root, "/usr/bin/aupguard", "version"); !strings.Contains(v, "1.2.3") {
		t.Errorf("installed binary's version: %q", v)
	}

	// A provider's edit of the conffile survives a reinstall (upgrade),
	// and removal (not purge) keeps it.
	cfg := filepath.Join(root, "etc/aupguard/aupguard.yaml")
	edited := "# edited by the provider\n"
	b, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, append([]byte(edited), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg("-i", deb)
	if b, _ := os.ReadFile(cfg); !strings.HasPrefix(string(b), edited) {
		t.Error("reinstalling replaced the provider's config")
	}
	dpkg("-r", "aupguard")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/aupguard")); err == nil {
		t.Error("binary still there after removal")
	}
	if b, _ := os.ReadFile(cfg); !strings.HasPrefix(string(b), edited) {
		t.Error("removal lost the provider's config")
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/aupguard")); err != nil {
		t.Error("removal lost the state directory")
	}
}
