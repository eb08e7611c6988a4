package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestServeLogsToSyslog runs the real binary with log.syslog pointing at a
// private Unix datagram socket (a syslog daemon's /dev/log stand-in): the
// start line arrives as an RFC 5424 message with facility mail (PRI 22 =
// mail.info), tag and pid, and stderr still has the JSON line. A datagram
// socket that disappears costs the gateway nothing but the syslog copy.
func TestServeLogsToSyslog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	sockDir, err := os.MkdirTemp("", "aupg-syslog-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "log")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf(`milter: {listen: "inet:%s"}
log: {format: json, syslog: {enabled: true, address: "unix:%s", facility: mail, tag: aupguard-test}}
optout: {unsubscribe: {listen: "off"}}
chain: [sender_identity]
customers:
  - id: acme
    networks: [127.0.0.0/16]
    domains: [acme.example]
`, addr, sock)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, bin, cfgPath, addr)
	header := regexp.MustCompile(`^<(\d+)>1 \S+ \S+ aupguard-test (\d+) - - (\{.*\})$`)
	buf := make([]byte, 64<<10)
	found := false
	for !found {
		_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := srv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no start line on the syslog socket: %v", err)
		}
		m := header.FindStringSubmatch(string(buf[:n]))
		if m == nil {
			t.Fatalf("not an RFC 5424 message from aupguard-test: %q", buf[:n])
		}
		if !strings.Contains(m[3], `"msg":"aupguard started"`) {
			continue
		}
		found = true
		if m[1] != "22" {
			t.Errorf("PRI %s, want 22 (facility mail, severity info)", m[1])
		}
		if m[2] != fmt.Sprint(s.cmd.Process.Pid) {
			t.Errorf("PROCID %s, want the gateway's pid %d", m[2], s.cmd.Process.Pid)
		}
	}
	if !strings.Contains(s.stderr.String(), `"msg":"aupguard started"`) {
		t.Errorf("stderr lost the JSON line:\n%s", s.stderr.String())
	}
	// The syslog socket goes away: mail is still decided.
	srv.Close()
	os.Remove(sock)
	if code := sendMessage(t, addr, 1); code != 250 {
		t.Fatalf("mail with syslog gone: %d\n%s", code, s.stderr.String())
	}
	waitFor(t, "the outage notice on stderr", func() bool {
		return strings.Contains(s.stderr.String(), "log lines go to standard error only")
	})
}
