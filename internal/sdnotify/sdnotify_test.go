package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a unixgram socket at name (a path or "@abstract").
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyReachesPathAndAbstractSockets(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@aupguard-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, name)
			n, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Notify("READY=1", "STATUS=serving"); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, c); got != "READY=1\nSTATUS=serving\n" {
				t.Fatalf("datagram %q", got)
			}
		})
	}
}

func TestBadSocketAndAssignmentsAreRefused(t *testing.T) {
	for _, s := range []string{"", "relative/path", "/" + strings.Repeat("x", 120)} {
		if _, err := New(s); err == nil {
			t.Errorf("New(%q) accepted", s)
		}
	}
	n, _ := New(filepath.Join(t.TempDir(), "none"))
	// A newline would let a status text inject READY=1 or MAINPID=.
	if err := n.Notify("STATUS=a\nMAINPID=1"); err == nil {
		t.Error("assignment with a newline accepted")
	}
	if err := n.Notify("READY=1"); err == nil {
		t.Error("sending to a missing socket reported no error")
	}
	var none *Notifier
	if err := none.Notify("READY=1"); err != nil {
		t.Errorf("nil notifier: %v", err)
	}
}

func TestFromEnvReadsAndClearsTheVariables(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n")
	tests := []struct {
		name    string
		pid     string
		usec    string
		wantWD  time.Duration
		wantErr bool
	}{
		{"watchdog for this process", fmt.Sprint(os.Getpid()), "2000000", 2 * time.Second, false},
		{"watchdog without pid", "", "500000", 500 * time.Millisecond, false},
		{"watchdog meant for another process", "1", "2000000", 0, false},
		{"bad watchdog value", "", "soon", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", sock)
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			n, err := FromEnv()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
				if _, set := os.LookupEnv(k); set {
					t.Errorf("%s still set", k)
				}
			}
			if err != nil {
				return
			}
			wd, _ := n.Watchdog()
			if wd != tc.wantWD {
				t.Errorf("watchdog %v, want %v", wd, tc.wantWD)
			}
		})
	}
	t.Run("no socket", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		if n, err := FromEnv(); n != nil || err != nil {
			t.Fatalf("%v %v", n, err)
		}
	})
}

func TestWatchdogPingsOnlyWhileAlive(t *testing.T) {
	name := filepath.Join(t.TempDir(), "n")
	c := listen(t, name)
	n, _ := New(name)
	n.watchdog = 200 * time.Millisecond
	var healthy atomic.Bool
	healthy.Store(true)
	missed := make(chan error, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(ctx, func(ctx context.Context) error {
			if healthy.Load() {
				return nil
			}
			<-ctx.Done() // a wedged probe
			return errors.New("wedged")
		}, func(err error) { missed <- err })
	}()
	start := time.Now()
	for i := 0; i < 3; i++ {
		if got := recv(t, c); got != "WATCHDOG=1\n" {
			t.Fatalf("ping %d: %q", i, got)
		}
	}
	// Three pings: at 0, iv/2 and iv; never later than the interval apart.
	if el := time.Since(start); el > 3*n.watchdog {
		t.Errorf("three pings took %v", el)
	}
	healthy.Store(false)
	select {
	case err := <-missed:
		if err.Error() != "wedged" {
			t.Fatalf("missed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a wedged probe was not reported")
	}
	// Pings sent before the switch may still be queued: drain them. Every
	// later round is a miss, so after two more misses nothing was sent.
	drain := func() int {
		k := 0
		buf := make([]byte, 64)
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if _, err := c.Read(buf); err != nil {
				return k
			}
			k++
		}
	}
	drain()
	for i := 0; i < 2; i++ {
		select {
		case <-missed:
		case <-time.After(5 * time.Second):
			t.Fatal("no further miss reported")
		}
	}
	if k := drain(); k != 0 {
		t.Fatalf("%d pings sent while the probe failed", k)
	}
	cancel()
	<-done
}
