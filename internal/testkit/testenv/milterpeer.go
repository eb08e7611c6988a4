package testenv

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	gm "github.com/d--j/go-milter"
)

// Helpers for tests of who may speak milter: a hostile local process that
// poses as the MTA. Run them as another user with [HelperAs] (names
// [HelperForge] and [HelperFlood]); they print one JSON object.

// Names of the milter helpers.
const (
	// HelperForge sends one whole milter transaction posing as Postfix
	// (args: ForgeArgs as flags); it prints a [ForgeResult].
	HelperForge = "milter-forge"
	// HelperFlood opens -n connections, sends the option negotiation on
	// each, and reports how many the server closed without an answer; it
	// then holds them open until its standard input closes. It prints a
	// [FloodResult] (before holding).
	HelperFlood = "milter-flood"
)

func init() {
	RegisterHelper(HelperForge, forgeMain)
	RegisterHelper(HelperFlood, floodMain)
}

// ForgeArgs are the flags of [HelperForge].
func ForgeArgs(network, addr, queueID, login, from, rcpt string) []string {
	return []string{"-network", network, "-addr", addr, "-queue-id", queueID, "-login", login, "-from", from, "-rcpt", rcpt}
}

// ForgeResult is what [HelperForge] saw.
type ForgeResult struct {
	// DialError is set when the connection could not be opened (e.g.
	// EACCES on a Unix socket); Errno is its errno name then.
	DialError string `json:"dial_error,omitempty"`
	Errno     string `json:"errno,omitempty"`
	// Stage is the last stage reached: negotiate, connect, mail, rcpt,
	// header, body, eom, done.
	Stage string `json:"stage"`
	// Error is why it stopped before done.
	Error string `json:"error,omitempty"`
	// EOM is the end-of-message action when reached.
	EOM string `json:"eom,omitempty"`
}

func forgeMain(args []string) int {
	fs := flag.NewFlagSet(HelperForge, flag.ContinueOnError)
	network := fs.String("network", "tcp", "")
	addr := fs.String("addr", "", "")
	qid := fs.String("queue-id", "", "")
	login := fs.String("login", "", "")
	from := fs.String("from", "", "")
	rcpt := fs.String("rcpt", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res := ForgeResult{Stage: "dial"}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	// Dial first ourselves, to tell a refused open (EACCES) from a closed
	// session; the session then runs on this one connection.
	c, err := net.DialTimeout(*network, *addr, 5*time.Second)
	if err != nil {
		res.DialError = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) {
			res.Errno = errnoName(en)
		}
		return 0
	}
	macros := gm.NewMacroBag()
	macros.Set(gm.MacroQueueId, *qid)
	macros.Set(gm.MacroAuthAuthen, *login)
	macros.Set(gm.MacroAuthType, "PLAIN")
	macros.Set(gm.MacroClientAddr, "192.0.2.99")
	macros.Set(gm.MacroDaemonName, "submission")
	macros.Set(gm.MacroMailAddr, *from)
	macros.Set(gm.MacroRcptAddr, *rcpt)
	cl := gm.NewClient(*network, *addr, gm.WithReadTimeout(5*time.Second), gm.WithWriteTimeout(5*time.Second), gm.WithDialer(oneConn{c}))
	res.Stage = "negotiate"
	s, err := cl.Session(macros)
	if err != nil {
		res.Error = err.Error()
		return 0
	}
	defer s.Close()
	step := func(stage string, f func() (*gm.Action, error)) bool {
		res.Stage = stage
		act, err := f()
		if err != nil {
			res.Error = err.Error()
			return false
		}
		if act != nil && act.StopProcessing() {
			res.Error = fmt.Sprintf("refused at %s: %d %s", stage, act.SMTPCode, act.SMTPReply)
			return false
		}
		return true
	}
	if !step("connect", func() (*gm.Action, error) { return s.Conn("client.test", gm.FamilyInet, 40000, "192.0.2.99") }) ||
		!step("helo", func() (*gm.Action, error) { return s.Helo("client.test") }) ||
		!step("mail", func() (*gm.Action, error) { return s.Mail("<"+*from+">", "") }) ||
		!step("rcpt", func() (*gm.Action, error) { return s.Rcpt("<"+*rcpt+">", "") }) ||
		!step("data", func() (*gm.Action, error) { return s.DataStart() }) ||
		!step("header", func() (*gm.Action, error) {
			return s.HeaderField("From", " <"+*from+">", nil)
		}) ||
		!step("header", func() (*gm.Action, error) { return s.HeaderField("Subject", " forged", nil) }) ||
		!step("header", func() (*gm.Action, error) { return s.HeaderEnd() }) ||
		!step("body", func() (*gm.Action, error) { return s.BodyChunk([]byte("forged\r\n")) }) {
		return 0
	}
	res.Stage = "eom"
	_, act, err := s.End()
	if err != nil {
		res.Error = err.Error()
		return 0
	}
	res.EOM = fmt.Sprintf("%c %d %s", act.Type, act.SMTPCode, strings.TrimSpace(act.SMTPReply))
	res.Stage = "done"
	return 0
}

// oneConn is a dialer that hands out a connection already open.
type oneConn struct{ c net.Conn }

func (d oneConn) Dial(string, string) (net.Conn, error) { return d.c, nil }

// FloodResult is what [HelperFlood] saw.
type FloodResult struct {
	Dialed     int `json:"dialed"`
	DialErrors int `json:"dial_errors"`
	// Closed connections ended (EOF or reset) without a byte of answer;
	// Answered got the negotiation reply; Silent neither within 10 s.
	Closed   int    `json:"closed"`
	Answered int    `json:"answered"`
	Silent   int    `json:"silent"`
	Error    string `json:"error,omitempty"`
}

func floodMain(args []string) int {
	fs := flag.NewFlagSet(HelperFlood, flag.ContinueOnError)
	network := fs.String("network", "tcp", "")
	addr := fs.String("addr", "", "")
	n := fs.Int("n", 600, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var res FloodResult
	var conns []net.Conn
	// SMFIC_OPTNEG, version 6, every action and protocol bit.
	neg := make([]byte, 4+1+12)
	binary.BigEndian.PutUint32(neg, 13)
	neg[4] = 'O'
	binary.BigEndian.PutUint32(neg[5:], 6)
	binary.BigEndian.PutUint32(neg[9:], 0x1ff)
	binary.BigEndian.PutUint32(neg[13:], 0x1fffff)
	for range *n {
		c, err := net.DialTimeout(*network, *addr, 5*time.Second)
		if err != nil {
			res.DialErrors++
			res.Error = err.Error()
			continue
		}
		res.Dialed++
		_, _ = c.Write(neg)
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 64)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		k, err := c.Read(buf)
		var ne net.Error
		switch {
		case k > 0:
			res.Answered++
		case errors.As(err, &ne) && ne.Timeout():
			res.Silent++
		default:
			res.Closed++
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	// Hold every connection (open on this side) until told to go.
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ENOENT:
		return "ENOENT"
	}
	return fmt.Sprintf("errno %d", int(e))
}
