package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkMessage is one message delivered to a [Sink].
type SinkMessage struct {
	// From is the envelope sender (MAIL FROM), without angle brackets; empty
	// for the null sender.
	From string
	// To holds the envelope recipients (RCPT TO) in the order given.
	To []string
	// Data is the message exactly as received after DATA (headers and body,
	// CRLF line endings, dot-unstuffed).
	Data []byte
	// Helo is the name the client gave in EHLO/HELO.
	Helo string
	// RemoteAddr is the client's address.
	RemoteAddr string
	// Received is when the end of data was received.
	Received time.Time
}

// Sink is an SMTP server on 127.0.0.1 that accepts every message (unless
// told to refuse some recipients, RefuseRcpt), without
// authentication or TLS, and records it. It is safe for concurrent use.
type Sink struct {
	srv  *smtp.Server
	addr string

	mu      sync.Mutex
	msgs    []SinkMessage
	changed chan struct{} // closed and replaced whenever msgs grows
	refuse  func(to string) *smtp.SMTPError
}

// RefuseRcpt makes the sink answer RCPT TO with the error f returns for a
// recipient (nil accepts it), as a receiver refusing unknown users with
// 550 5.1.1 does; nil f accepts every recipient again.
func (s *Sink) RefuseRcpt(f func(to string) *smtp.SMTPError) {
	s.mu.Lock()
	s.refuse = f
	s.mu.Unlock()
}

// StartSink starts a [Sink] on a free port of 127.0.0.1; t.Cleanup closes it.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: sink listen: %v", err)
	}
	s := &Sink{addr: ln.Addr().String(), changed: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s, conn: c}, nil
	}))
	srv.Domain = "sink.test"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxLineLength = 1 << 20
	srv.EnableSMTPUTF8 = true
	logger := &sinkLogger{t: t}
	srv.ErrorLog = logger
	s.srv = srv
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Logf("testenv: sink %s: %v", s.addr, err)
		}
	}()
	t.Cleanup(func() {
		logger.close()
		srv.Close()
		<-done
	})
	return s
}

// Addr returns the sink's "127.0.0.1:port" address.
func (s *Sink) Addr() string { return s.addr }

// Messages returns a copy of the messages received so far, oldest first.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// WaitFor waits until at least n messages have been received and returns
// them all. On timeout it returns what was received so far with an error.
func (s *Sink) WaitFor(n int, timeout time.Duration) ([]SinkMessage, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := slices.Clone(s.msgs)
			s.mu.Unlock()
			return msgs, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			msgs := s.Messages()
			return msgs, fmt.Errorf("testenv: sink %s: got %d message(s), want at least %d within %v", s.addr, len(msgs), n, timeout)
		}
	}
}

// Reset forgets all received messages.
func (s *Sink) Reset() {
	s.mu.Lock()
	s.msgs = nil
	s.mu.Unlock()
}

func (s *Sink) add(m SinkMessage) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// sinkSession is one SMTP connection to the sink.
type sinkSession struct {
	sink *Sink
	conn *smtp.Conn
	from string
	to   []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.to = from, nil
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.sink.mu.Lock()
	refuse := ss.sink.refuse
	ss.sink.mu.Unlock()
	if refuse != nil {
		if e := refuse(to); e != nil {
			return e
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.sink.add(SinkMessage{
		From:       ss.from,
		To:         slices.Clone(ss.to),
		Data:       data,
		Helo:       ss.conn.Hostname(),
		RemoteAddr: ss.conn.Conn().RemoteAddr().String(),
		Received:   time.Now(),
	})
	return nil
}

// sinkLogger sends go-smtp's server errors to the test log until the test
// is being cleaned up (logging after a test ends panics).
type sinkLogger struct {
	t      testing.TB
	mu     sync.RWMutex
	closed bool
}

func (l *sinkLogger) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

func (l *sinkLogger) Printf(format string, v ...any) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.closed {
		l.t.Logf("testenv: sink: "+format, v...)
	}
}

func (l *sinkLogger) Println(v ...any) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.closed {
		l.t.Logf("testenv: sink: %s", fmt.Sprint(v...))
	}
}
