package syslog

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfc5424 is the header of an RFC 5424 message as this package writes it:
// PRI, version 1, timestamp, host, app, procid, no msgid, no structured data.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) (\S+) (\d+) - - (.*)$`)

// listenUnixgram is a private syslog socket: a Unix datagram server in a
// temporary folder.
func listenUnixgram(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "aupg-syslog-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

func readDatagram(t *testing.T, c net.PacketConn) string {
	t.Helper()
	buf := make([]byte, 128<<10)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no syslog message: %v", err)
	}
	return string(buf[:n])
}

// TestRFC5424OverUnixDatagram: each record is one datagram with PRI
// facility*8+severity (mail = 2), version 1, the tag and the pid, and the
// JSON line as MSG.
func TestRFC5424OverUnixDatagram(t *testing.T) {
	path, srv := listenUnixgram(t)
	w, err := New(Options{Address: "unix:" + path, Facility: "mail", Tag: "aupguard"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	log := slog.New(w.Handler(slog.LevelDebug, "json")).With("component", "test")
	for _, tc := range []struct {
		level slog.Level
		pri   int
	}{{slog.LevelInfo, 2*8 + 6}, {slog.LevelWarn, 2*8 + 4}, {slog.LevelError, 2*8 + 3}, {slog.LevelDebug, 2*8 + 7}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			log.Log(context.Background(), tc.level, "decision", "queue_id", "4ABC")
			m := rfc5424.FindStringSubmatch(readDatagram(t, srv))
			if m == nil {
				t.Fatal("not an RFC 5424 message")
			}
			if pri, _ := strconv.Atoi(m[1]); pri != tc.pri || pri/8 != 2 {
				t.Errorf("PRI %d, want %d (facility mail)", pri, tc.pri)
			}
			if m[4] != "aupguard" || m[5] != strconv.Itoa(os.Getpid()) {
				t.Errorf("app %q procid %q", m[4], m[5])
			}
			if !strings.HasPrefix(m[6], `{"time":`) || !strings.Contains(m[6], `"msg":"decision","component":"test","queue_id":"4ABC"`) || strings.HasSuffix(m[6], "\n") {
				t.Errorf("MSG %q", m[6])
			}
		})
	}
}

// TestRFC5424OverTCP frames each message with its length (RFC 6587).
func TestRFC5424OverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := New(Options{Address: "tcp:" + ln.Addr().String(), Facility: "local3"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	slog.New(w.Handler(slog.LevelInfo, "text")).Info("hello world")
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	n, err := r.ReadString(' ')
	if err != nil {
		t.Fatal(err)
	}
	size, _ := strconv.Atoi(strings.TrimSpace(n))
	buf := make([]byte, size)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	m := rfc5424.FindStringSubmatch(string(buf))
	if m == nil || m[1] != strconv.Itoa(19*8+6) || m[4] != "aupguard" || !strings.Contains(m[6], `msg="hello world"`) {
		t.Fatalf("frame %q", buf)
	}
}

// TestNeverBlocksTheCaller: with nobody listening, and with a listener
// that never reads (its buffer full), logging goes on at full speed; lost
// lines are counted and said once on the error stream.
func TestNeverBlocksTheCaller(t *testing.T) {
	dir := t.TempDir()
	var errs strings.Builder
	w, err := New(Options{Address: "unix:" + filepath.Join(dir, "nobody"), Errors: &errs}) // written by the sending goroutine only, read after Close
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(w.Handler(slog.LevelInfo, "json"))
	start := time.Now()
	for i := 0; i < 3*queueLen; i++ {
		log.Info("flood", "i", i)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d lines took %v with syslog down", 3*queueLen, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Dropped() != uint64(3*queueLen) || w.Sent() != 0 {
		t.Errorf("dropped %d sent %d, want %d and 0", w.Dropped(), w.Sent(), 3*queueLen)
	}
	if n := strings.Count(errs.String(), "log lines go to standard error only"); n != 1 {
		t.Errorf("the outage was reported %d times:\n%s", n, errs.String())
	}
	log.Info("after close") // no panic, nothing sent
}

// TestOptionsRefuseBadValues pins the errors of the config's values.
func TestOptionsRefuseBadValues(t *testing.T) {
	for _, o := range []Options{
		{Address: "relative/path"},
		{Address: "unix:relative"},
		{Address: "udp:nohostport"},
		{Address: "http://x"},
		{Facility: "mial"},
		{Tag: "two words"},
		{Tag: strings.Repeat("a", 49)},
	} {
		if w, err := New(o); err == nil {
			w.Close(context.Background())
			t.Errorf("%+v accepted", o)
		}
	}
}
