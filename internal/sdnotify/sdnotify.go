// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): newline-separated VAR=VALUE assignments sent as one
// datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
// abstract address written with a leading '@'). The gateway uses it for
// Type=notify: READY=1 once it serves, RELOADING=1/READY=1 around a
// reload, STOPPING=1 at shutdown, and WATCHDOG=1 keep-alive pings.
//
// It trusts the environment it was started with, as systemd sets it; the
// variables are removed from the process environment once read, so that
// programs the gateway runs (postconf) do not inherit them.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends notifications to the service manager. A nil *Notifier
// (no $NOTIFY_SOCKET) sends nothing and reports no error.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// FromEnv returns the Notifier of $NOTIFY_SOCKET, or nil when it is unset
// (not run by systemd as Type=notify). Its watchdog interval is
// $WATCHDOG_USEC when $WATCHDOG_PID is unset or names this process.
// NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are then unset.
func FromEnv() (*Notifier, error) {
	sock := os.Getenv("NOTIFY_SOCKET")
	usec := os.Getenv("WATCHDOG_USEC")
	pid := os.Getenv("WATCHDOG_PID")
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		_ = os.Unsetenv(k)
	}
	if sock == "" {
		return nil, nil
	}
	n, err := New(sock)
	if err != nil {
		return nil, err
	}
	if usec != "" && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		u, err := strconv.ParseUint(usec, 10, 63)
		if err != nil || u == 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC=%q: want a positive number of microseconds", usec)
		}
		n.watchdog = time.Duration(u) * time.Microsecond
	}
	return n, nil
}

// New returns a Notifier sending to socket: an absolute path or "@name"
// for the abstract namespace (Linux).
func New(socket string) (*Notifier, error) {
	if socket == "" || (socket[0] != '/' && socket[0] != '@') {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or @abstract name", socket)
	}
	if len(socket) >= 108 { // sizeof(sockaddr_un.sun_path)
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: too long for a socket address", socket)
	}
	// Go maps a leading '@' to the abstract namespace's NUL byte.
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// Watchdog returns the interval the service manager expects WATCHDOG=1
// within, and whether the watchdog is on.
func (n *Notifier) Watchdog() (time.Duration, bool) {
	if n == nil || n.watchdog <= 0 {
		return 0, false
	}
	return n.watchdog, true
}

// Notify sends the assignments as one datagram, e.g. Notify("READY=1",
// "STATUS=serving"). A value must not contain a newline.
func (n *Notifier) Notify(assignments ...string) error {
	if n == nil || len(assignments) == 0 {
		return nil
	}
	for _, a := range assignments {
		if strings.ContainsRune(a, '\n') || !strings.Contains(a, "=") {
			return fmt.Errorf("sd_notify: bad assignment %q", a)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	if _, err := c.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Monotonic returns MONOTONIC_USEC=N with the CLOCK_MONOTONIC time, as
// systemd wants it beside RELOADING=1 (systemd 253 and later).
func Monotonic() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "MONOTONIC_USEC=0"
	}
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// RunWatchdog sends WATCHDOG=1 every half watchdog interval while alive
// answers nil within that half interval, until ctx is done. A probe that
// fails or hangs withholds the ping (so that the service manager restarts
// a wedged process) and is passed to missed. Without a watchdog it returns
// at once.
func (n *Notifier) RunWatchdog(ctx context.Context, alive func(context.Context) error, missed func(error)) {
	iv, ok := n.Watchdog()
	if !ok {
		return
	}
	tick := time.NewTicker(iv / 2)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, iv/2)
		err := alive(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = n.Notify("WATCHDOG=1")
		}
		if err != nil && missed != nil {
			missed(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
