package milter

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestMain lets the peer tests run this binary as another Unix user (the
// hostile local process).
func TestMain(m *testing.M) {
	testenv.HelperMain()
	os.Exit(m.Run())
}

// refusals counts refused peers by reason.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) PeerRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *refusals) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// syncBuffer is a log sink safe for the accept goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nobody is the hostile user of these tests: its uid and primary group.
func nobody(t *testing.T) (uid uint32, group string, gid uint32) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	id, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	grp, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Skipf("no group %s: %v", u.Gid, err)
	}
	return uint32(id), grp.Name, uint32(g)
}

// sharedDir is a directory every user can traverse (t.TempDir's parent
// is private to root).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "aupg-milter-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func forgeAs(t *testing.T, login string, groups []uint32, network, addr string) testenv.ForgeResult {
	t.Helper()
	out := testenv.RunHelperAs(t, login, groups, testenv.HelperForge,
		testenv.ForgeArgs(network, addr, "4ABC123DEF", "acme", "a@acme.example", "rcpt@example.org")...)
	var r testenv.ForgeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return r
}

func TestUnixSocketCreatedForTheMTAOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket another group")
	}
	_, nobodyGroup, nobodyGID := nobody(t)
	dir := filepath.Join(sharedDir(t), "spool", "aupguard")
	path := filepath.Join(dir, "milter.sock")
	var log syncBuffer
	s := startServerWith(t, &testCheck{}, Options{Listen: "unix:" + path, SocketGroup: nobodyGroup,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	t.Run("the socket is 0660, owned by the gateway, group the MTA's", func(t *testing.T) {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || st.Uid != 0 || st.Gid != nobodyGID {
			t.Fatalf("socket %v uid %d gid %d, want socket 0660 uid 0 gid %d", fi.Mode(), st.Uid, st.Gid, nobodyGID)
		}
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o750 || di.Sys().(*syscall.Stat_t).Gid != nobodyGID {
			t.Fatalf("directory %v gid %d, want 0750 gid %d", di.Mode(), di.Sys().(*syscall.Stat_t).Gid, nobodyGID)
		}
		if s.Addr().String() != path {
			t.Fatalf("Addr %s, want %s", s.Addr(), path)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("directory holds %d entries, want the socket only", len(entries))
		}
	})
	t.Run("root (an allowed peer) is served", func(t *testing.T) {
		c := gm.NewClient("unix", path)
		cs, err := c.Session(gm.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		cs.Close()
	})
	t.Run("a second gateway on the same path refuses to start", func(t *testing.T) {
		if _, err := listenUnix(path, "", slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another process is listening") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("shutdown removes the socket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Fatalf("socket left behind: %v", err)
		}
	})
}

func TestUnixSocketPathHandling(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	t.Run("a stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // the file stays: a gateway that died
		l, err := listenUnix(path, "", discard)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the new socket does not answer: %v", err)
		}
		c.Close()
	})
	t.Run("a file that is not a socket is left alone", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m.sock")
		os.WriteFile(path, []byte("data"), 0o600)
		if _, err := listenUnix(path, "", discard); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("err %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "data" {
			t.Fatal("the file was replaced")
		}
	})
	t.Run("a directory every user can write is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "open")
		os.Mkdir(dir, 0o777)
		os.Chmod(dir, 0o777)
		if _, err := listenUnix(filepath.Join(dir, "m.sock"), "", discard); err == nil || !strings.Contains(err.Error(), "writable by every user") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("a group that does not exist: the gateway's own group, said in the log, never world access", func(t *testing.T) {
		var log syncBuffer
		path := filepath.Join(t.TempDir(), "m.sock")
		l, err := listenUnix(path, "no-such-group-aupg", slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fi, _ := os.Lstat(path)
		if fi.Mode().Perm() != 0o660 || int(fi.Sys().(*syscall.Stat_t).Gid) != os.Getegid() {
			t.Fatalf("socket %v gid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
		}
		if !strings.Contains(log.String(), "milter socket group does not exist on this host") {
			t.Fatalf("log:\n%s", log.String())
		}
	})
	t.Run("a path too long for a socket is an error, not a truncated path", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
		if _, err := listenUnix(filepath.Join(dir, "milter.sock"), "", discard); err == nil || !strings.Contains(err.Error(), "too long") {
			t.Fatalf("err %v", err)
		}
	})
}

// TestOtherUserCannotSpeakMilter runs a milter client as the user nobody,
// as a customer's PHP would on a shared host.
func TestOtherUserCannotSpeakMilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	nobodyUID, nobodyGroup, nobodyGID := nobody(t)
	t.Run("unix socket: a user outside the socket's group cannot open it", func(t *testing.T) {
		path := filepath.Join(sharedDir(t), "m", "milter.sock")
		startServerWith(t, &testCheck{}, Options{Listen: "unix:" + path, SocketGroup: "root"})
		r := forgeAs(t, "nobody", nil, "unix", path)
		if r.Errno != "EACCES" {
			t.Fatalf("nobody's connect: %+v, want EACCES", r)
		}
	})
	t.Run("unix socket: a user who can open it but is not an allowed peer is closed at once", func(t *testing.T) {
		path := filepath.Join(sharedDir(t), "m", "milter.sock")
		var obs refusals
		var log syncBuffer
		s := startServerWith(t, &testCheck{}, Options{Listen: "unix:" + path, SocketGroup: nobodyGroup, Peers: &obs,
			Logger: slog.New(slog.NewTextHandler(&log, nil))})
		r := forgeAs(t, "nobody", []uint32{nobodyGID}, "unix", path)
		if r.DialError != "" || r.Stage != "negotiate" || r.Error == "" {
			t.Fatalf("nobody's session: %+v, want closed at negotiation", r)
		}
		if obs.get(RefusedUser) != 1 || s.Active() != 0 {
			t.Fatalf("refused %v, active %d", obs.n, s.Active())
		}
		if n := strings.Count(log.String(), "milter connection refused: peer not allowed"); n != 1 || !strings.Contains(log.String(), "uid="+strconv.Itoa(int(nobodyUID))) {
			t.Fatalf("%d refusal lines:\n%s", n, log.String())
		}
		// Allowing the user (a reload) lets it in: the session reaches the
		// policy (which defers this unattributed mail at MAIL).
		s.SetAccess([]uint32{0, nobodyUID}, nil)
		if r := forgeAs(t, "nobody", []uint32{nobodyGID}, "unix", path); r.Stage == "dial" || r.Stage == "negotiate" || r.Stage == "connect" {
			t.Fatalf("allowed nobody: %+v", r)
		}
	})
	t.Run("tcp loopback: another user's connection is closed at once; root's is served", func(t *testing.T) {
		var obs refusals
		s := startServerWith(t, &testCheck{}, Options{Peers: &obs})
		r := forgeAs(t, "nobody", nil, "tcp", s.Addr().String())
		if r.DialError != "" || r.Stage != "negotiate" || r.Error == "" {
			t.Fatalf("nobody's session: %+v, want closed at negotiation", r)
		}
		if obs.get(RefusedUser) != 1 {
			t.Fatalf("refused %v", obs.n)
		}
		c := gm.NewClient("tcp", s.Addr().String())
		cs, err := c.Session(gm.NewMacroBag())
		if err != nil {
			t.Fatalf("root refused: %v", err)
		}
		cs.Close()
	})
	t.Run("tcp loopback: 600 idle connections of another user never hold a slot", func(t *testing.T) {
		var obs refusals
		var log syncBuffer
		s := startServerWith(t, &testCheck{}, Options{Peers: &obs, Logger: slog.New(slog.NewTextHandler(&log, nil))}) // 8 slots
		cmd := testenv.HelperAs(t, "nobody", nil, testenv.HelperFlood, "-network", "tcp", "-addr", s.Addr().String(), "-n", "600")
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stdin.Close(); cmd.Wait() }()
		var fr testenv.FloodResult
		if err := json.NewDecoder(stdout).Decode(&fr); err != nil {
			t.Fatalf("flood helper: %v\n%s", err, stderr.String())
		}
		if fr.Dialed != 600 || fr.Closed != 600 || fr.Answered != 0 || fr.Silent != 0 {
			t.Fatalf("flood %+v, want 600 dialed and closed", fr)
		}
		// While the flood's sockets are open on its side, root still gets
		// one of the 8 slots.
		c := gm.NewClient("tcp", s.Addr().String(), gm.WithReadTimeout(5*time.Second))
		cs, err := c.Session(gm.NewMacroBag())
		if err != nil {
			t.Fatalf("root refused during the flood: %v", err)
		}
		cs.Close()
		if obs.get(RefusedUser) != 600 {
			t.Fatalf("refused %v, want user: 600", obs.n)
		}
		if n := strings.Count(log.String(), "milter connection refused"); n > refusedLinesPerSecond*20 {
			t.Errorf("%d refusal log lines for 600 refusals: the log is not bounded", n)
		}
	})
}

// TestPeerCheckOddPeers pins that the check never panics or lets through
// a peer it cannot see.
func TestPeerCheckOddPeers(t *testing.T) {
	owners, err := newOwnerLookup()
	if err != nil {
		t.Fatalf("sock_diag: %v", err)
	}
	var acc atomicAccess
	acc.Store(&Access{UIDs: []uint32{uint32(os.Geteuid())}})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	t.Run("a loopback peer that closed before the check is refused", func(t *testing.T) {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		sc, err := raw.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		l := &peerListener{Listener: raw, access: &acc.Pointer, owner: owners, log: slog.New(slog.DiscardHandler)}
		if v := l.check(sc); v.ok || v.reason != RefusedUnverified {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("the same live peer is allowed", func(t *testing.T) {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := raw.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		l := &peerListener{Listener: raw, access: &acc.Pointer, owner: owners, log: slog.New(slog.DiscardHandler)}
		if v := l.check(sc); !v.ok || v.uid != int64(os.Geteuid()) {
			t.Fatalf("verdict %+v", v)
		}
	})
	for _, tc := range []struct{ name, listen, dial string }{
		{"IPv6 loopback", "[::1]:0", "[::1]"},
		{"an IPv4 peer on a dual-stack listener (mapped address)", "[::]:0", "127.0.0.1"},
	} {
		t.Run(tc.name+": the live peer is found and allowed", func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Skipf("no %s: %v", tc.listen, err)
			}
			defer ln.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			c, err := net.Dial("tcp", net.JoinHostPort(strings.Trim(tc.dial, "[]"), port))
			if err != nil {
				t.Skipf("dial: %v", err)
			}
			defer c.Close()
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			l := &peerListener{Listener: ln, access: &acc.Pointer, owner: owners, log: slog.New(slog.DiscardHandler)}
			if v := l.check(sc); !v.ok || v.uid != int64(os.Geteuid()) {
				t.Fatalf("verdict %+v", v)
			}
		})
	}
	t.Run("a connection of another type is refused, not a panic", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		l := &peerListener{Listener: raw, access: &acc.Pointer, owner: owners, log: slog.New(slog.DiscardHandler)}
		if v := l.check(a); v.ok || v.reason != RefusedUnverified {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("a remote peer outside allowed_mtas is refused before any lookup", func(t *testing.T) {
		acc2 := atomicAccess{}
		acc2.Store(&Access{UIDs: []uint32{0}, Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := raw.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		l := &peerListener{Listener: raw, access: &acc2.Pointer, owner: nil, log: slog.New(slog.DiscardHandler)}
		if v := l.check(sc); v.ok || v.reason != RefusedNetwork {
			t.Fatalf("verdict %+v", v)
		}
	})
}

// BenchmarkPeerCheck is the per-connection cost of the check on TCP
// loopback (one sock_diag lookup) and on a Unix socket (one getsockopt).
func BenchmarkPeerCheck(b *testing.B) {
	owners, err := newOwnerLookup()
	if err != nil {
		b.Fatal(err)
	}
	var acc atomicAccess
	acc.Store(&Access{UIDs: []uint32{uint32(os.Geteuid())}})
	for _, network := range []string{"tcp", "unix"} {
		b.Run(network, func(b *testing.B) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(b.TempDir(), "s")
			}
			raw, err := net.Listen(network, addr)
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			c, err := net.Dial(network, raw.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			sc, err := raw.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			l := &peerListener{Listener: raw, access: &acc.Pointer, owner: owners, log: slog.New(slog.DiscardHandler)}
			b.ResetTimer()
			for b.Loop() {
				if v := l.check(sc); !v.ok {
					b.Fatalf("%+v", v)
				}
			}
		})
	}
}

var _ io.Closer = (*unixListener)(nil)

// atomicAccess holds an Access for a peerListener built by hand.
type atomicAccess struct{ atomic.Pointer[Access] }
