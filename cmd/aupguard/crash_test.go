package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"
)

// gatewayProc is the real binary serving one config.
type gatewayProc struct {
	cmd    *exec.Cmd
	stderr *syncBuf
	exited chan error
}

func startGateway(t *testing.T, bin, cfgPath, addr string) *gatewayProc {
	t.Helper()
	p := &gatewayProc{cmd: exec.Command(bin, "serve", "-config", cfgPath), stderr: &syncBuf{}, exited: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	waitFor(t, "the milter to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// sendMessage runs one whole transaction and returns the SMTP code of the
// decision (250 for accept).
func sendMessage(t *testing.T, addr string, n int) int {
	t.Helper()
	cs, err := gm.NewClient("tcp", addr, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cs.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
	cs.Helo("c")
	if act, err := cs.Mail("a@acme.example", ""); err != nil {
		t.Fatal(err)
	} else if act.StopProcessing() {
		return int(act.SMTPCode)
	}
	if act, err := cs.Rcpt(fmt.Sprintf("r%d@example.org", n), ""); err != nil {
		t.Fatal(err)
	} else if act.StopProcessing() {
		return int(act.SMTPCode)
	}
	cs.DataStart()
	cs.HeaderField("From", " <a@acme.example>", nil)
	cs.HeaderField("Subject", fmt.Sprintf(" message %d", n), nil)
	cs.HeaderEnd()
	_, act, err := cs.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if act.Type == gm.ActionAccept {
		return 250
	}
	return int(act.SMTPCode)
}

// dailyCount reads the messages_per_day count of the memory store's state
// file as it is on disk.
func dailyCount(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	var keys map[string]struct {
		B map[string]int64 `json:"b"`
	}
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var n int64
	for k, v := range keys {
		if strings.Contains(k, "messages_per_day") {
			for _, c := range v.B {
				n += c
			}
		}
	}
	return n
}

// TestQuotaSurvivesSIGKILL: with the memory store, a customer with a daily
// quota of 5 sends 5 messages; the gateway is killed with SIGKILL (no
// clean stop writes anything) and restarted; the 6th message is deferred.
// Then a shutdown whose last write fails exits non-zero with the error
// logged.
func TestQuotaSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf("milter: {listen: \"inet:%s\"}\nlog: {format: text}\nstore: {backend: memory, path: %q}\noptout: {unsubscribe: {listen: \"off\"}}\n"+
		"chain: [rate_limit]\ndefaults: {limits: {messages_per_day: 5}}\n"+
		"customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n", addr, state)
	os.WriteFile(cfgPath, []byte(cfg), 0o600)

	g := startGateway(t, bin, cfgPath, addr)
	for i := 1; i <= 5; i++ {
		if code := sendMessage(t, addr, i); code != 250 {
			t.Fatalf("message %d: %d, want accepted\n%s", i, code, g.stderr.String())
		}
	}
	file := filepath.Join(state, "ratelimit.json")
	t.Logf("on disk right after the 5th accept: %d of 5 counted (at most one snapshot interval behind)", dailyCount(t, file))
	// The snapshot is written within a second, without any clean stop.
	waitFor(t, "the periodic snapshot", func() bool { return dailyCount(t, file) == 5 })
	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-g.exited

	g = startGateway(t, bin, cfgPath, addr)
	if code := sendMessage(t, addr, 6); code != 451 {
		t.Fatalf("6th message after SIGKILL and restart: %d, want 451 (quota reached)\n%s", code, g.stderr.String())
	}

	// The store's directory disappears: the last write at shutdown fails,
	// which is logged and makes the exit status non-zero.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	sendMessage(t, addr, 7) // something to write
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.exited:
		if err == nil {
			t.Fatalf("exit 0 although the store's last write failed\n%s", g.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if log := g.stderr.String(); !strings.Contains(log, "closing the store failed") {
		t.Fatalf("the failed write is not logged:\n%s", log)
	}
}
