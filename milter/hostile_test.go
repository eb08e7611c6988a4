package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/observability/panics"
)

// pkt frames one milter packet.
func pkt(code byte, data string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(b, code), data...)
}

// mtaNegotiation is what Postfix sends first: protocol 6, every action,
// every protocol flag.
var mtaNegotiation = pkt('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff")

// crashers are the five inputs that ended the process with go-milter
// v0.10.2: a packet of length 0 before and after negotiation, and
// connect, MAIL and RCPT packets without their NUL terminator.
var crashers = []struct {
	name string
	in   []byte
}{
	{"zero length before negotiation", []byte{0, 0, 0, 0}},
	{"zero length after negotiation", append(append([]byte{}, mtaNegotiation...), 0, 0, 0, 0)},
	{"connect without NUL", bytes.Join([][]byte{mtaNegotiation, pkt('C', "client.example")}, nil)},
	{"MAIL without NUL", bytes.Join([][]byte{mtaNegotiation, pkt('C', "c\x004\x00\x19192.0.2.1\x00"), pkt('M', "<a@acme.example>")}, nil)},
	{"RCPT without NUL", bytes.Join([][]byte{mtaNegotiation, pkt('C', "c\x004\x00\x19192.0.2.1\x00"),
		pkt('D', "M{auth_authen}\x00acme\x00"), pkt('M', "<a@acme.example>\x00"), pkt('R', "<b@example.org>")}, nil)},
}

// logBuffer is a log output safe for the server's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// hostileServer is a server with a panic reporter and a log to inspect.
type hostileServer struct {
	*Server
	panics *panics.Reporter
	log    *logBuffer
}

func startHostile(t testing.TB, opts Options) hostileServer {
	t.Helper()
	log := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(log, nil))
	opts.Logger = logger
	if opts.Panics == nil {
		opts.Panics = panics.New(logger)
	}
	s := startServerWith(t, &testCheck{}, opts)
	return hostileServer{Server: s, panics: opts.Panics, log: log}
}

// sendRaw writes in to a new connection, says it is done writing, and
// reads until the server closes the connection.
func sendRaw(t testing.TB, addr net.Addr, in []byte) []byte {
	t.Helper()
	c, err := net.Dial(addr.Network(), addr.String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(in); err != nil && !isReset(err) {
		t.Fatalf("write: %v", err)
	}
	_ = c.(interface{ CloseWrite() error }).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("the server did not close the connection: %v", err)
	}
	return out
}

func isReset(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// transact runs one whole, well-formed transaction and fails unless the
// server accepts it with the check's header.
func transact(t testing.TB, addr net.Addr) {
	t.Helper()
	c := gm.NewClient(addr.Network(), addr.String(), gm.WithActions(gm.AllClientSupportedActionMasks))
	macros := gm.NewMacroBag()
	macros.Set(gm.MacroAuthAuthen, "acme")
	macros.Set(gm.MacroQueueId, "4ABCDEF")
	cs, err := c.Session(macros)
	if err != nil {
		t.Fatalf("the server no longer answers: %v", err)
	}
	defer cs.Close()
	if _, err := cs.Conn("client.example", gm.FamilyInet, 25000, "203.0.113.9"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Helo("client.example"); err != nil {
		t.Fatal(err)
	}
	continueTransaction(t, cs)
}

// continueTransaction runs MAIL to end of message on an open session.
func continueTransaction(t testing.TB, cs *gm.ClientSession) {
	t.Helper()
	if act, err := cs.Mail("news@acme.example", ""); err != nil || act.StopProcessing() {
		t.Fatalf("mail: %v %v", act, err)
	}
	if act, err := cs.Rcpt("alice@example.org", ""); err != nil || act.StopProcessing() {
		t.Fatalf("rcpt: %v %v", act, err)
	}
	if _, err := cs.DataStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.HeaderField("From", " <news@acme.example>", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.BodyChunk([]byte("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	mods, act, err := cs.End()
	if err != nil || act.Type != gm.ActionAccept || len(mods) != 1 || mods[0].HeaderName != "X-Test-Signed" {
		t.Fatalf("end: %v %v %v", mods, act, err)
	}
}

// TestCrashersCloseOnlyTheirConnection sends each input that used to end
// the process while another MTA session is in the middle of a message: the
// hostile connection is closed with one log line, nothing panics, the
// other session finishes its message and new sessions work.
func TestCrashersCloseOnlyTheirConnection(t *testing.T) {
	s := startHostile(t, Options{})
	addr := s.Addr()
	for _, tc := range crashers {
		t.Run(tc.name, func(t *testing.T) {
			s.log.Reset()
			other := session(t, s.Server, "acme", "203.0.113.9")
			if act, err := other.Mail("news@acme.example", ""); err != nil || act.StopProcessing() {
				t.Fatalf("mail: %v %v", act, err)
			}
			if out := sendRaw(t, addr, tc.in); len(out) > 0 && out[4] != 'O' {
				t.Errorf("answer to a hostile input is more than the negotiation: %q", out)
			}
			if n := s.panics.Total(); n != 0 {
				t.Fatalf("%d panics recovered: the checks did not stop the input", n)
			}
			if got := strings.Count(s.log.String(), "milter connection closed: protocol violation"); got != 1 {
				t.Errorf("%d protocol violation log lines, want 1:\n%s", got, s.log.String())
			}
			if err := other.Abort(nil); err != nil {
				t.Fatal(err)
			}
			continueTransaction(t, other)
			transact(t, addr)
		})
	}
}

// panicObserver panics when the first session opens: it runs inside the
// milter library's connection goroutine, outside the gateway's handlers.
type panicObserver struct{ n atomic.Int32 }

func (o *panicObserver) SessionOpened() {
	if o.n.Add(1) == 1 {
		panic("observer bug")
	}
}
func (o *panicObserver) SessionClosed() {}

// TestLibraryPanicClosesOnlyThatConnection is the defence in depth: a
// panic in the library's connection goroutine (here provoked from the
// session observer, which the library calls outside any handler) closes
// that connection, is logged once with its stack, counted, and the server
// goes on.
func TestLibraryPanicClosesOnlyThatConnection(t *testing.T) {
	s := startHostile(t, Options{Sessions: &panicObserver{}})
	addr := s.Addr()
	c := gm.NewClient("tcp", addr.String(), gm.WithActions(gm.AllClientSupportedActionMasks))
	cs, err := c.Session(gm.NewMacroBag())
	if err == nil {
		// The negotiation answer may be out before the panic: the next
		// command finds the connection closed.
		_, err = cs.Conn("client.example", gm.FamilyInet, 25000, "203.0.113.9")
		if err == nil {
			_, err = cs.Mail("news@acme.example", "")
		}
		cs.Close()
	}
	if err == nil {
		t.Fatal("the connection whose goroutine panicked was not closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.panics.Total() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	counts := s.panics.Counts()
	if len(counts) != 1 || counts[0] != (panics.Count{Where: panics.WhereConnection, N: 1}) {
		t.Fatalf("panic counts %v, want one at %s", counts, panics.WhereConnection)
	}
	log := s.log.String()
	if strings.Count(log, "panic recovered") != 1 || !strings.Contains(log, "observer bug") || !strings.Contains(log, "goroutine") {
		t.Errorf("want one log line with the panic and its stack:\n%s", log)
	}
	transact(t, addr)
}

// TestHandlerPanicIsLoggedAndCounted: a check that panics defers the
// message, and the panic is logged with its stack and counted.
func TestHandlerPanicIsLoggedAndCounted(t *testing.T) {
	s := startHostile(t, Options{})
	cs := session(t, s.Server, "acme", "203.0.113.9")
	act, err := cs.Mail("panic@acme.example", "")
	if err != nil || act.SMTPCode != 451 {
		t.Fatalf("mail: %v %v", act, err)
	}
	counts := s.panics.Counts()
	if len(counts) != 1 || counts[0] != (panics.Count{Where: panics.WhereCheck, N: 1}) {
		t.Fatalf("panic counts %v, want one at %s", counts, panics.WhereCheck)
	}
	if log := s.log.String(); !strings.Contains(log, `"detail":"test"`) || !strings.Contains(log, "check bug") || !strings.Contains(log, "testCheck).Mail") {
		t.Errorf("want the check, the panic and its stack in the log:\n%s", log)
	}
}

// FuzzMilterListener feeds arbitrary byte streams to a live milter
// listener, then checks that nothing panicked and that the same server
// still accepts a well-formed transaction. One server serves every input
// of a fuzz worker. The first byte of an input chooses whether a valid
// option negotiation is sent before the rest, so that the fuzzer reaches
// the commands after it.
func FuzzMilterListener(f *testing.F) {
	for _, c := range crashers {
		f.Add(append([]byte{0}, c.in...))
	}
	valid := bytes.Join([][]byte{
		pkt('D', "C{client_addr}\x00203.0.113.9\x00"),
		pkt('C', "client.example\x004\x00\x19203.0.113.9\x00"),
		pkt('H', "client.example\x00"),
		pkt('D', "M{auth_authen}\x00acme\x00"),
		pkt('M', "<news@acme.example>\x00SIZE=10\x00"),
		pkt('R', "<alice@example.org>\x00"),
		pkt('T', ""),
		pkt('L', "From\x00 <news@acme.example>\x00"),
		pkt('N', ""),
		pkt('B', "hello\r\n"),
		pkt('E', ""),
		pkt('Q', ""),
	}, nil)
	f.Add(append([]byte{1}, valid...))
	f.Add(append([]byte{0}, append(append([]byte{}, mtaNegotiation...), valid...)...))
	f.Add([]byte{1, 0, 0, 0, 2, 'C', 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})

	// A unix socket: the cheapest stream per input, one server for all.
	srv := startHostile(f, Options{Listen: "unix:" + filepath.Join(f.TempDir(), "milter.sock")})
	addr := srv.Addr()
	var runs atomic.Int64
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 0 && in[0]&1 == 1 {
			in = append(append([]byte{}, mtaNegotiation...), in[1:]...)
		} else if len(in) > 0 {
			in = in[1:]
		}
		sendRaw(t, addr, in)
		if n := srv.panics.Total(); n != 0 {
			t.Fatalf("input %q: %d panics recovered:\n%s", in, n, srv.log.String())
		}
		// A whole transaction after each input would double the cost of
		// an input; one every 64 inputs of each worker, the first after
		// the first seed, shows the server still serves mail.
		if runs.Add(1)%64 == 1 {
			transact(t, addr)
		}
		if srv.log.Len() > 1<<20 {
			srv.log.Reset()
		}
	})
}
