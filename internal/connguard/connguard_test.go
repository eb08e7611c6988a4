package connguard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuf is a log destination safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// scriptedListener returns the scripted errors first, then connections.
type scriptedListener struct {
	mu     sync.Mutex
	errs   []error
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newScripted(errs ...error) *scriptedListener {
	return &scriptedListener{errs: errs, conns: make(chan net.Conn, 4), closed: make(chan struct{})}
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *scriptedListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func emfile() error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func TestRetryRidesOutAcceptErrors(t *testing.T) {
	t.Run("errors are retried with a doubling back-off capped at 1s, logged once per episode", func(t *testing.T) {
		var errs []error
		for range 12 {
			errs = append(errs, emfile())
		}
		inner := newScripted(errs...)
		c1, c2 := net.Pipe()
		defer c2.Close()
		inner.conns <- c1
		var log syncBuf
		l := Retry(inner, "milter", slog.New(slog.NewTextHandler(&log, nil)))
		var waits []time.Duration
		l.sleep = func(d time.Duration, _ <-chan struct{}) bool { waits = append(waits, d); return true }
		c, err := l.Accept()
		if err != nil || c != c1 {
			t.Fatalf("Accept = %v, %v; want the connection after the errors", c, err)
		}
		want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000}
		if len(waits) != len(want) {
			t.Fatalf("waited %v, want %d waits", waits, len(want))
		}
		for i := range want {
			if waits[i] != want[i]*time.Millisecond {
				t.Fatalf("waits %v, want %v ms", waits, want)
			}
		}
		out := log.String()
		if n := strings.Count(out, "listener accept failing"); n != 1 {
			t.Errorf("%d failure lines for one episode, want 1:\n%s", n, out)
		}
		if !strings.Contains(out, "listener accepting again") || !strings.Contains(out, "failures=12") || !strings.Contains(out, "too many open files") {
			t.Errorf("recovery line missing or incomplete:\n%s", out)
		}
		if l.Failures() != 12 || l.Episodes() != 1 {
			t.Errorf("Failures %d Episodes %d, want 12 and 1", l.Failures(), l.Episodes())
		}
	})
	t.Run("a second episode logs again and starts the back-off over", func(t *testing.T) {
		inner := newScripted(emfile())
		var log syncBuf
		l := Retry(inner, "admin", slog.New(slog.NewTextHandler(&log, nil)))
		var waits []time.Duration
		l.sleep = func(d time.Duration, _ <-chan struct{}) bool { waits = append(waits, d); return true }
		for range 2 {
			c1, c2 := net.Pipe()
			defer c2.Close()
			inner.conns <- c1
			if _, err := l.Accept(); err != nil {
				t.Fatal(err)
			}
			inner.mu.Lock()
			inner.errs = append(inner.errs, emfile(), emfile())
			inner.mu.Unlock()
		}
		if got := strings.Count(log.String(), "listener accept failing"); got != 2 {
			t.Errorf("%d failure lines for two episodes, want 2", got)
		}
		if fmt.Sprint(waits) != "[5ms 5ms 10ms]" {
			t.Errorf("waits %v, want [5ms 5ms 10ms]", waits)
		}
	})
	t.Run("closing ends an Accept waiting to retry with net.ErrClosed", func(t *testing.T) {
		inner := newScripted(emfile(), emfile(), emfile())
		l := Retry(inner, "unsubscribe", nil)
		started := make(chan struct{})
		var once sync.Once
		l.sleep = func(d time.Duration, closed <-chan struct{}) bool {
			once.Do(func() { close(started) })
			<-closed
			return false
		}
		done := make(chan error, 1)
		go func() { _, err := l.Accept(); done <- err }()
		<-started
		l.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	})
	t.Run("a closed inner listener is not retried", func(t *testing.T) {
		inner := newScripted()
		inner.Close()
		l := Retry(inner, "milter", nil)
		l.sleep = func(time.Duration, <-chan struct{}) bool { t.Fatal("retried a closed listener"); return false }
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept = %v, want net.ErrClosed", err)
		}
	})
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer reports whether the server closed c at once (EOF or a
// reset on read) rather than holding it.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestLimitCapsConnectionsOverallAndPerClient(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuf
	l := Limit(raw, "unsubscribe", Limits{Max: 5, PerClient: 2}, slog.New(slog.NewTextHandler(&log, nil)))
	defer l.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	addr := raw.Addr().String()
	// Client 127.0.0.2 gets two; its third is closed at once.
	a1, a2 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	s1, s2 := <-held, <-held
	a3 := dialFrom(t, "127.0.0.2", addr)
	if !closedByServer(a3) {
		t.Fatal("a client's third connection was held over the per-client cap of 2")
	}
	// Others still get in, up to the overall cap of 5.
	var others []net.Conn
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		others = append(others, dialFrom(t, src, addr))
		<-held
	}
	if l.Held() != 5 {
		t.Fatalf("held %d, want 5", l.Held())
	}
	over := dialFrom(t, "127.0.0.6", addr)
	if !closedByServer(over) {
		t.Fatal("a sixth connection was held over the cap of 5")
	}
	if l.Refused() != 2 {
		t.Errorf("refused %d, want 2", l.Refused())
	}
	if n := strings.Count(log.String(), "connection refused: over the listener's cap"); n != 1 {
		t.Errorf("%d refusal lines within 10s, want 1 (then counted):\n%s", n, log.String())
	}
	// A closed connection gives its slot back, once however often closed.
	s1.Close()
	s1.Close()
	s2.Close()
	a1.Close()
	a2.Close()
	b1 := dialFrom(t, "127.0.0.2", addr)
	b2 := dialFrom(t, "127.0.0.2", addr)
	<-held
	<-held
	if l.Held() != 5 {
		t.Fatalf("held %d after two closed and two new, want 5", l.Held())
	}
	for _, c := range append(others, b1, b2, a3, over) {
		c.Close()
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7:1234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:1234", "192.0.2.7/32"},
		{"[2001:db8:1:2:aaaa::1]:25", "2001:db8:1:2::/64"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			ap, _ := net.ResolveTCPAddr("tcp", tc.addr)
			k, ok := ClientKey(ap)
			if !ok || k.String() != tc.want {
				t.Fatalf("ClientKey(%s) = %s %v, want %s", tc.addr, k, ok, tc.want)
			}
		})
	}
	if _, ok := ClientKey(&net.UnixAddr{Name: "@", Net: "unix"}); ok {
		t.Fatal("a Unix peer has an IP client key")
	}
}

func TestFitSharesTheDescriptorLimit(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		limit, open, pool, milter int
		caps                      []Limits
		want                      []Limits
		lowered, short            bool
	}{
		{"caps that fit are kept", 65536, 20, 40, 512, []Limits{{1024, 32}, {64, 16}}, []Limits{{1024, 32}, {64, 16}}, false, false},
		{"a small cap kept, the big one lowered to the rest", 1024, 20, 0, 512, []Limits{{1024, 32}, {64, 16}},
			[]Limits{{428 - 64, 32}, {64, 16}}, true, false},
		{"a huge cap does not starve the other", 1024, 20, 0, 512, []Limits{{50000, 40}, {64, 16}},
			[]Limits{{428 - 64, 40}, {64, 16}}, true, false},
		{"equal shares when both are over; a per-client cap never above its lowered cap", 700, 20, 0, 512, []Limits{{1024, 32}, {64, 16}},
			[]Limits{{52, 32}, {52, 16}}, true, false},
		{"three listeners", 1024, 20, 0, 512, []Limits{{1000, 8}, {100, 8}, {10, 8}},
			[]Limits{{428 - 100 - 10, 8}, {100, 8}, {10, 8}}, true, false},
		{"no room at all: caps of 1 and short", 512, 20, 0, 512, []Limits{{1024, 32}, {64, 16}}, []Limits{{1, 1}, {1, 1}}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps := append([]Limits(nil), tc.caps...)
			shares := make([]Share, len(caps))
			for i := range caps {
				shares[i] = Share{Name: strconv.Itoa(i), Limits: &caps[i]}
			}
			b := Fit(tc.limit, tc.open, tc.pool, tc.milter, shares)
			if fmt.Sprint(caps) != fmt.Sprint(tc.want) || b.Lowered != tc.lowered || b.Short != tc.short {
				t.Fatalf("Fit = %v lowered %v short %v, want %v %v %v (budget %+v)", caps, b.Lowered, b.Short, tc.want, tc.lowered, tc.short, b)
			}
			sum := tc.open + tc.pool + Headroom + tc.milter
			for _, c := range caps {
				sum += c.Max
			}
			if !tc.short && sum > tc.limit {
				t.Fatalf("caps %v with the reserve and the milter add up to %d, above the limit %d", caps, sum, tc.limit)
			}
		})
	}
}

// TestRaiseNoFileReachesTheHardLimit runs in a child whose soft limit is
// below its hard one.
func TestRaiseNoFileReachesTheHardLimit(t *testing.T) {
	if os.Getenv("CONNGUARD_CHILD") == "raise" {
		nf, err := RaiseNoFile()
		fmt.Printf("soft=%d hard=%d err=%v\n", nf.Soft, nf.Hard, err)
		return
	}
	out := runChild(t, "raise", 256, 512, "TestRaiseNoFileReachesTheHardLimit")
	if !strings.Contains(out, "soft=512 hard=512 err=<nil>") {
		t.Fatalf("child: %s", out)
	}
}

// runChild runs this test binary's test named run in a child process
// with the descriptor limits soft:hard (prlimit), CONNGUARD_CHILD=mode.
func runChild(t *testing.T, mode string, soft, hard int, run string) string {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	cmd := exec.Command(prlimit, fmt.Sprintf("--nofile=%d:%d", soft, hard), os.Args[0], "-test.run=^"+run+"$", "-test.v")
	cmd.Env = append(os.Environ(), "CONNGUARD_CHILD="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return string(out)
}

// TestHTTPServerSurvivesRealDescriptorExhaustion: in a child limited to
// 64 descriptors, an http.Server on a Retry listener has its descriptors
// taken (files held open) while clients connect: accept fails with EMFILE
// for real; the server keeps retrying, logs the episode once, and serves
// every waiting client once the descriptors are given back.
func TestHTTPServerSurvivesRealDescriptorExhaustion(t *testing.T) {
	if os.Getenv("CONNGUARD_CHILD") == "emfile" {
		exhaustionChild()
		return
	}
	out := runChild(t, "emfile", 64, 64, "TestHTTPServerSurvivesRealDescriptorExhaustion")
	for _, want := range []string{"served=3", "listener accept failing", "too many open files", "listener accepting again", "episodes=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

func exhaustionChild() {
	var log syncBuf
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		return
	}
	rl := Retry(raw, "unsubscribe", slog.New(slog.NewTextHandler(&log, nil)))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), ReadHeaderTimeout: 5 * time.Second}
	// Three clients connected before the descriptors run out (their own
	// sockets are open; the server's side waits in the backlog).
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			fmt.Println("dial:", err)
			return
		}
		clients = append(clients, c)
	}
	// Take every descriptor left, then serve and wait for the server to
	// have failed.
	var hog []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		hog = append(hog, f)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(rl) }()
	for deadline := time.Now().Add(5 * time.Second); rl.Failures() < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	for _, f := range hog {
		f.Close()
	}
	n := 0
	for _, c := range clients {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		if strings.HasSuffix(string(b), "ok") {
			n++
		}
	}
	srv.Close()
	fmt.Printf("served=%d failures=%d episodes=%d serve_returned=%v\n%s", n, rl.Failures(), rl.Episodes(), <-served, log.String())
}
