package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	gm "github.com/d--j/go-milter"
)

// TestReloadNeverRefusesAllMail runs the real binary and sends it SIGHUP
// with the configs a truncating config tool or a slip would leave: an
// empty file, a comment-only file and a config without customers. Each
// reload is refused with its reason, and the customer's mail still goes
// through on the running config, on an open MTA session and on a new one.
func TestReloadNeverRefusesAllMail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	base := fmt.Sprintf("milter: {listen: \"inet:%s\"}\nlog: {format: text}\noptout: {unsubscribe: {listen: \"off\"}}\nchain: [sender_identity]\n", addr)
	good := base + "customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n"
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, bin, cfgPath, addr)
	cmd, stderr := srv.cmd, srv.stderr
	open, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	open.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
	open.Helo("c")

	mailGoesThrough := func(t *testing.T) {
		t.Helper()
		if act, err := open.Mail("a@acme.example", ""); err != nil || act.StopProcessing() {
			t.Fatalf("open session: mail refused after the reload: %v %v", act, err)
		}
		if err := open.Abort(nil); err != nil {
			t.Fatal(err)
		}
		cs, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		cs.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
		cs.Helo("c")
		if act, err := cs.Mail("a@acme.example", ""); err != nil || act.StopProcessing() {
			t.Fatalf("new session: mail refused after the reload: %v %v", act, err)
		}
	}
	mailGoesThrough(t)

	tests := []struct {
		name, config string
		// want are fragments of the log line that explains the refusal.
		want []string
	}{
		{"empty file", "", []string{"reload refused: config error", "line=1", "the config is empty"}},
		{"comments only", "# customers:\n#   - id: acme\n\n", []string{"reload refused: config error", "line=1", "the config is empty"}},
		{"truncated after the chain", base, []string{"reload refused: no customers", "running_customers=1"}},
		{"explicitly no customers", base + "customers: []\n", []string{"reload refused: no customers"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(stderr.String())
			if err := os.WriteFile(cfgPath, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the refused reload", func() bool { return strings.Contains(stderr.String()[before:], "reload refused") })
			log := stderr.String()[before:]
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("reload log lacks %q:\n%s", w, log)
				}
			}
			if strings.Contains(log, "config reloaded") {
				t.Fatalf("the config was loaded:\n%s", log)
			}
			mailGoesThrough(t)
		})
	}

	// A good config still reloads afterwards.
	before := len(stderr.String())
	os.WriteFile(cfgPath, []byte(good), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the good reload", func() bool { return strings.Contains(stderr.String()[before:], "config reloaded") })
}

// TestCheckConfigRefusesEmptyFiles: check-config fails on an empty or
// comment-only file, with its place.
func TestCheckConfigRefusesEmptyFiles(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "comments": "# nothing here\n#\n", "blank": "\n\n"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "aupguard.yaml")
			os.WriteFile(p, []byte(content), 0o600)
			var out, errb strings.Builder
			if code := runCheckConfig([]string{"-config", p}, &out, &errb); code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q", code, out.String())
			}
			if want := p + ":1: the config is empty"; !strings.Contains(errb.String(), want) {
				t.Fatalf("stderr %q lacks %q", errb.String(), want)
			}
		})
	}
}

// TestReloadChangesAllowedPeers runs the real binary on a TCP loopback
// listener that allows only another user: this test's own milter session
// is closed at once and logged; after SIGHUP with its uid added to
// milter.allowed_peers it is served, without a restart.
func TestReloadChangesAllowedPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	me := strconv.Itoa(os.Geteuid())
	other := "65534"
	if me == other {
		other = "0"
	}
	config := func(peers string) string {
		return fmt.Sprintf("milter: {listen: \"inet:%s\", allowed_peers: [%s]}\nlog: {format: text}\noptout: {unsubscribe: {listen: \"off\"}}\nchain: [sender_identity]\ncustomers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n", addr, peers)
	}
	cfgPath := filepath.Join(t.TempDir(), "aupguard.yaml")
	if err := os.WriteFile(cfgPath, []byte(config(`"`+other+`"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, bin, cfgPath, addr)
	session := func() error {
		cs, err := gm.NewClient("tcp", addr).Session(gm.NewMacroBag())
		if err == nil {
			cs.Close()
		}
		return err
	}
	if err := session(); err == nil {
		t.Fatal("a session of a user outside allowed_peers was served")
	}
	waitFor(t, "the refusal line", func() bool {
		return strings.Contains(srv.stderr.String(), "milter connection refused: peer not allowed") && strings.Contains(srv.stderr.String(), "uid="+me)
	})
	before := len(srv.stderr.String())
	if err := os.WriteFile(cfgPath, []byte(config(`"`+other+`", "`+me+`"`)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return strings.Contains(srv.stderr.String()[before:], "config reloaded") })
	if err := session(); err != nil {
		t.Fatalf("after the reload: %v\n%s", err, srv.stderr.String())
	}
}
