package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// notifyListener is the service manager's end of NOTIFY_SOCKET: every
// datagram the gateway sends, in order.
type notifyListener struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T, dir string) *notifyListener {
	t.Helper()
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &notifyListener{path: path, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next returns the next datagram that is not a watchdog ping; pings seen
// on the way are counted into *pings.
func (n *notifyListener) next(t *testing.T, pings *int) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if m == "WATCHDOG=1\n" {
				*pings++
				continue
			}
			return m
		case <-timeout:
			t.Fatal("timed out waiting for a notification")
		}
	}
}

// TestServeNotifiesTheServiceManager runs the real binary as systemd runs
// it with Type=notify, WatchdogSec= and UMask=0077: the milter on a Unix
// socket, a datagram socket as NOTIFY_SOCKET and WATCHDOG_USEC set. READY=1
// comes once the milter socket accepts sessions (mode 0660 despite the
// umask), WATCHDOG=1 at least every half interval, RELOADING=1 with
// MONOTONIC_USEC then READY=1 on SIGHUP (also for a refused reload), and
// STOPPING=1 on SIGTERM before a clean exit.
func TestServeNotifiesTheServiceManager(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "milter.sock")
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	good := fmt.Sprintf("milter: {listen: \"unix:%s\"}\nstore: {backend: memory, path: %q}\nlog: {format: text}\n"+
		"optout: {unsubscribe: {listen: \"off\"}}\nadmin: {listen: \"off\"}\nchain: [sender_identity]\n"+
		"customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n", sock, filepath.Join(dir, "state"))
	if err := os.WriteFile(cfgPath, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	nl := listenNotify(t, dir)
	const watchdog = time.Second
	cmd := exec.Command("/bin/sh", "-c", `umask 077; exec "$0" serve -config "$1"`, bin, cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nl.path, "WATCHDOG_USEC="+strconv.Itoa(int(watchdog/time.Microsecond)))
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	pings := 0
	got := nl.next(t, &pings)
	if !strings.HasPrefix(got, "READY=1\nSTATUS=serving milter on "+sock) {
		t.Fatalf("first notification %q, want READY=1 with the status\nlog:\n%s", got, stderr)
	}
	// Ready means ready: the socket is there, Postfix's group may use it,
	// and a session gets the customer's mail through.
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("milter socket mode %v under umask 077, want socket 0660", fi.Mode())
	}
	s, err := gm.NewClient("unix", sock, gm.WithActions(gm.AllClientSupportedActionMasks)).Session(gm.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	s.Conn("c", gm.FamilyInet, 1, "127.0.0.5")
	s.Helo("c")
	if act, err := s.Mail("a@acme.example", ""); err != nil || act.StopProcessing() {
		t.Fatalf("mail refused after READY=1: %v %v", act, err)
	}
	s.Close()

	// Watchdog: pings keep coming, never more than the interval apart.
	last := time.Now()
	for i := 0; i < 3; i++ {
		select {
		case m := <-nl.msgs:
			if m != "WATCHDOG=1\n" {
				t.Fatalf("unexpected notification %q", m)
			}
			if gap := time.Since(last); gap > watchdog {
				t.Errorf("watchdog ping %v after the previous one, interval %v", gap, watchdog)
			}
			last = time.Now()
		case <-time.After(5 * watchdog):
			t.Fatal("no watchdog ping")
		}
	}

	reload := func(t *testing.T, wantStatus string) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		m := nl.next(t, &pings)
		lines := strings.Split(strings.TrimSuffix(m, "\n"), "\n")
		if len(lines) != 3 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
			t.Fatalf("on SIGHUP: %q, want RELOADING=1 and MONOTONIC_USEC", m)
		}
		if us, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil || us <= 0 {
			t.Fatalf("MONOTONIC_USEC %q", lines[1])
		}
		m = nl.next(t, &pings)
		if !strings.HasPrefix(m, "READY=1\nSTATUS="+wantStatus) {
			t.Fatalf("after the reload: %q, want READY=1 and STATUS=%s...", m, wantStatus)
		}
	}
	t.Run("reload", func(t *testing.T) { reload(t, "serving milter on ") })
	t.Run("refused reload", func(t *testing.T) {
		if err := os.WriteFile(cfgPath, []byte("milter: [\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		reload(t, "reload refused, running config kept: ")
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if m := nl.next(t, &pings); !strings.HasPrefix(m, "STOPPING=1\n") {
		t.Fatalf("on SIGTERM: %q, want STOPPING=1", m)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\nlog:\n%s", err, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
}

// TestServeReadyWaitsForTheStore: with the Redis store down at start the
// gateway serves (store.on_error) but does not claim to be ready: it says
// what it waits for in STATUS=, and sends READY=1 once Redis answers.
func TestServeReadyWaitsForTheStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	rd.Stop()
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "aupguard.yaml")
	cfg := fmt.Sprintf("milter: {listen: \"inet:%s\"}\nstore: {backend: redis, path: %q, redis: {addrs: [%q]}}\nlog: {format: text}\n"+
		"optout: {unsubscribe: {listen: \"off\"}}\nadmin: {listen: \"off\"}\nchain: [sender_identity]\n"+
		"customers:\n  - id: acme\n    networks: [127.0.0.0/16]\n    domains: [acme.example]\n", addr, filepath.Join(dir, "state"), rd.Addr())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	nl := listenNotify(t, dir)
	srv := startServe(t, bin, cfgPath, addr, "NOTIFY_SOCKET="+nl.path)
	pings := 0
	m := nl.next(t, &pings)
	if !strings.HasPrefix(m, "STATUS=waiting for the redis store: ") {
		t.Fatalf("first notification with the store down: %q\n%s", m, srv.stderr)
	}
	t0 := time.Now()
	rd.Start()
	t.Logf("redis restarted in %v", time.Since(t0))
	defer func() { t.Logf("READY %v after Redis was started", time.Since(t0)) }()
	for {
		m = nl.next(t, &pings)
		if strings.HasPrefix(m, "STATUS=waiting") {
			continue
		}
		if !strings.HasPrefix(m, "READY=1\n") {
			t.Fatalf("after Redis started: %q", m)
		}
		break
	}
}
