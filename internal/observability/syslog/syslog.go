// Package syslog sends the gateway's log lines to syslog as RFC 5424
// messages (facility mail by default), besides the JSON or text lines on
// standard error: over the local /dev/log datagram socket (systemd-journald
// or a syslog daemon), another Unix datagram socket, UDP, or TCP with
// octet-counting framing (RFC 6587 §3.4.1).
//
// Sending never blocks the caller: each line is queued and written by one
// goroutine; when the queue is full or the socket fails, lines are dropped
// and counted, and one line per episode says so on standard error. The
// connection is dialled again with back-off.
package syslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Facilities are the RFC 5424 §6.2.1 facility names and codes.
var Facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// DefaultAddress is the local syslog socket.
const DefaultAddress = "unix:/dev/log"

// queueLen bounds the lines waiting for the socket.
const queueLen = 4096

// maxMessage bounds one message (longer lines are cut): journald and most
// daemons accept 64 KiB datagrams, RFC 5426 §3.2 recommends staying under
// what the transport carries.
const maxMessage = 60 << 10

// ParseAddress splits "unix:PATH", "unixgram:PATH", "udp:HOST:PORT",
// "tcp:HOST:PORT" or a bare absolute path ("" is DefaultAddress) into a
// network and an address for net.Dial.
func ParseAddress(s string) (network, addr string, err error) {
	if s == "" {
		s = DefaultAddress
	}
	if strings.HasPrefix(s, "/") {
		return "unixgram", s, nil
	}
	n, a, ok := strings.Cut(s, ":")
	if !ok || a == "" {
		return "", "", fmt.Errorf("want unix:PATH, udp:HOST:PORT or tcp:HOST:PORT, got %q", s)
	}
	switch n {
	case "unix", "unixgram":
		if !strings.HasPrefix(a, "/") {
			return "", "", fmt.Errorf("unix socket path %q is not absolute", a)
		}
		return "unixgram", a, nil
	case "udp", "tcp":
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", "", fmt.Errorf("%s address %q: %v", n, a, err)
		}
		return n, a, nil
	}
	return "", "", fmt.Errorf("unknown syslog transport %q (unix, udp or tcp)", n)
}

// Options configure a Writer.
type Options struct {
	// Address is where messages go (ParseAddress); "" is /dev/log.
	Address string
	// Facility is a name of Facilities; "" is mail.
	Facility string
	// Tag is the APP-NAME; "" is aupguard.
	Tag string
	// Errors receives one line per episode of failure (standard error).
	Errors io.Writer
	// Now is the clock of the TIMESTAMP field (default time.Now).
	Now func() time.Time
}

// Writer queues syslog messages and sends them from one goroutine.
type Writer struct {
	network, addr string
	facility      int
	tag, host     string
	pid           string
	errs          io.Writer
	now           func() time.Time

	queue   chan []byte
	done    chan struct{}
	qmu     sync.RWMutex // Send holds it shared, Close exclusively
	closed  bool
	dropped atomic.Uint64
	sent    atomic.Uint64
	once    sync.Once
}

// New validates o and starts the sending goroutine. The socket is dialled
// by that goroutine, so a syslog that is down at start is an episode of
// dropped lines, not an error.
func New(o Options) (*Writer, error) {
	network, addr, err := ParseAddress(o.Address)
	if err != nil {
		return nil, err
	}
	if o.Facility == "" {
		o.Facility = "mail"
	}
	fac, ok := Facilities[o.Facility]
	if !ok {
		return nil, fmt.Errorf("unknown facility %q", o.Facility)
	}
	if o.Tag == "" {
		o.Tag = "aupguard"
	}
	if err := CheckTag(o.Tag); err != nil {
		return nil, err
	}
	if o.Errors == nil {
		o.Errors = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	host, _ := os.Hostname()
	if host == "" || !printable(host) {
		host = "-"
	}
	w := &Writer{network: network, addr: addr, facility: fac, tag: o.Tag, host: host, pid: strconv.Itoa(os.Getpid()),
		errs: o.Errors, now: o.Now, queue: make(chan []byte, queueLen), done: make(chan struct{})}
	go w.run()
	return w, nil
}

// CheckTag reports whether tag is a valid APP-NAME (RFC 5424 §6.2.5:
// 1 to 48 printable US-ASCII characters).
func CheckTag(tag string) error {
	if tag == "" || len(tag) > 48 || !printable(tag) {
		return fmt.Errorf("tag %q: want 1 to 48 printable ASCII characters without spaces", tag)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// Severity maps a slog level to an RFC 5424 severity.
func Severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // error
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // informational
	}
	return 7 // debug
}

// Send queues one message (msg without its trailing newline) at severity
// sev; it never blocks: with the queue full the message is dropped and
// counted.
func (w *Writer) Send(sev int, msg []byte) {
	msg = []byte(strings.TrimRight(string(msg), "\r\n"))
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	// RFC 5424 §6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP
	// PROCID SP MSGID SP STRUCTURED-DATA SP MSG.
	frame := make([]byte, 0, len(msg)+96)
	frame = append(frame, '<')
	frame = strconv.AppendInt(frame, int64(w.facility*8+sev), 10)
	frame = append(frame, ">1 "...)
	frame = w.now().UTC().AppendFormat(frame, "2006-01-02T15:04:05.000000Z07:00")
	frame = append(frame, ' ')
	frame = append(frame, w.host...)
	frame = append(frame, ' ')
	frame = append(frame, w.tag...)
	frame = append(frame, ' ')
	frame = append(frame, w.pid...)
	frame = append(frame, " - - "...)
	frame = append(frame, msg...)
	w.qmu.RLock()
	defer w.qmu.RUnlock()
	if w.closed {
		return
	}
	select {
	case w.queue <- frame:
	default:
		w.dropped.Add(1)
	}
}

// Dropped is how many messages were lost (queue full or socket failing).
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Sent is how many messages were written to the socket.
func (w *Writer) Sent() uint64 { return w.sent.Load() }

func (w *Writer) run() {
	defer close(w.done)
	var conn net.Conn
	failing := false
	backoff := 100 * time.Millisecond
	var retryAt time.Time
	for frame := range w.queue {
		if conn == nil && time.Now().After(retryAt) {
			c, err := net.DialTimeout(w.network, w.addr, 2*time.Second)
			if err != nil {
				if !failing {
					fmt.Fprintf(w.errs, "aupguard: syslog %s:%s: %v: log lines go to standard error only until it answers\n", w.network, w.addr, err)
				}
				failing = true
				retryAt = time.Now().Add(backoff)
				backoff = min(2*backoff, 30*time.Second)
			} else {
				conn = c
			}
		}
		if conn == nil {
			w.dropped.Add(1)
			continue
		}
		out := frame
		if w.network == "tcp" {
			// RFC 6587 §3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG.
			out = append(strconv.AppendInt(nil, int64(len(frame)), 10), ' ')
			out = append(out, frame...)
		}
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(out); err != nil {
			w.dropped.Add(1)
			conn.Close()
			conn = nil
			if !failing {
				fmt.Fprintf(w.errs, "aupguard: syslog %s:%s: %v: log lines go to standard error only until it answers\n", w.network, w.addr, err)
			}
			failing = true
			retryAt = time.Now().Add(backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		w.sent.Add(1)
		if failing {
			fmt.Fprintf(w.errs, "aupguard: syslog %s:%s answers again (%d lines dropped so far)\n", w.network, w.addr, w.dropped.Load())
		}
		failing, backoff = false, 100*time.Millisecond
	}
	if conn != nil {
		conn.Close()
	}
}

// Close sends what is queued (up to ctx's deadline) and stops.
func (w *Writer) Close(ctx context.Context) error {
	w.once.Do(func() {
		w.qmu.Lock()
		w.closed = true
		close(w.queue)
		w.qmu.Unlock()
	})
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return errors.New("syslog: lines still queued at shutdown")
	}
}

// Handler returns a slog.Handler sending each record to w, rendered as
// JSON (format "json") or text, at and above level.
func (w *Writer) Handler(level slog.Leveler, format string) slog.Handler {
	lw := &lineWriter{w: w}
	opts := &slog.HandlerOptions{Level: level}
	var inner slog.Handler
	if format == "text" {
		inner = slog.NewTextHandler(lw, opts)
	} else {
		inner = slog.NewJSONHandler(lw, opts)
	}
	return &handler{inner: inner, lw: lw}
}

// lineWriter receives the one Write per record of the inner handler; the
// record's severity is set under mu by handler.Handle just before.
type lineWriter struct {
	w   *Writer
	mu  sync.Mutex
	sev int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.w.Send(l.sev, p)
	return len(p), nil
}

type handler struct {
	inner slog.Handler
	lw    *lineWriter
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	h.lw.mu.Lock()
	defer h.lw.mu.Unlock()
	h.lw.sev = Severity(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{inner: h.inner.WithAttrs(as), lw: h.lw}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{inner: h.inner.WithGroup(name), lw: h.lw}
}

// Fanout returns a handler that passes every record to each of hs.
func Fanout(hs ...slog.Handler) slog.Handler { return fanout(hs) }

type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
