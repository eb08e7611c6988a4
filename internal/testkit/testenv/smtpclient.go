package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Credentials are a SASL PLAIN login.
type Credentials struct {
	Username string
	Password string
}

// SendOptions describes one SMTP transaction for [SendMail].
type SendOptions struct {
	// LocalAddr is the source IP address to connect from, e.g. "127.0.0.5",
	// so that a test can pose as different client networks (all of
	// 127.0.0.0/8 is local on Linux). Empty lets the kernel choose.
	LocalAddr string
	// Helo is the EHLO name; default "client.test".
	Helo string
	// Auth, if not nil, authenticates with AUTH PLAIN after EHLO.
	Auth *Credentials
	// From is the envelope sender; empty means the null sender <>.
	From string
	// To are the envelope recipients, sent one RCPT each.
	To []string
	// Data is the message (headers, blank line, body). Bare LF line endings
	// are converted to CRLF.
	Data []byte
	// Size, if not zero, is sent as the SIZE= parameter of MAIL (only when
	// the server advertises SIZE).
	Size int64
	// Timeout bounds the connection set-up and each command's reply,
	// including the reply to the end of data; default 60 s.
	Timeout time.Duration
}

// Reply is one SMTP server reply.
type Reply struct {
	// Code is the three-digit reply code, e.g. 250 or 554.
	Code int
	// EnhancedCode is the RFC 3463 status code, e.g. "5.7.1"; empty if the
	// server gave none.
	EnhancedCode string
	// Text is the reply text without code and enhanced code; the lines of a
	// multi-line reply are joined with "\n".
	Text string
}

// OK reports whether the reply is a positive completion (2xx) or
// intermediate (3xx) reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 400 }

// String formats the reply as it appeared on the wire, e.g.
// "554 5.7.1 rejected".
func (r Reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.EnhancedCode != "" {
		s += " " + r.EnhancedCode
	}
	return s + " " + strings.ReplaceAll(r.Text, "\n", " / ")
}

// RcptReply is the reply to one RCPT command.
type RcptReply struct {
	// Rcpt is the recipient address sent.
	Rcpt string
	Reply
}

// SMTPResult records what the server replied at each stage of a
// [SendMail] transaction. Stages that were not reached are nil/empty.
type SMTPResult struct {
	// Greeting is the server's 220 (or 554) banner.
	Greeting *Reply
	// Helo is the reply to EHLO (or to the HELO fallback).
	Helo *Reply
	// Auth is the reply to AUTH; nil when no authentication was requested.
	Auth *Reply
	// Mail is the reply to MAIL FROM.
	Mail *Reply
	// Rcpts has one entry per RCPT sent, in order. SendMail carries on after
	// a rejected recipient, as a real client does.
	Rcpts []RcptReply
	// Data is the reply to the DATA command (354 when the server is ready
	// for the message). It is nil when no recipient was accepted.
	Data *Reply
	// EndOfData is the reply after the message's final dot, i.e. the
	// server's verdict on the message. Nil if DATA was not accepted.
	EndOfData *Reply
}

// Delivered reports whether the server accepted the message at end of data.
func (r *SMTPResult) Delivered() bool {
	return r != nil && r.EndOfData != nil && r.EndOfData.Code/100 == 2
}

// AcceptedRcpts returns the recipients the server accepted.
func (r *SMTPResult) AcceptedRcpts() []string {
	var acc []string
	for _, rr := range r.Rcpts {
		if rr.OK() {
			acc = append(acc, rr.Rcpt)
		}
	}
	return acc
}

// String renders the transaction, one stage a line, for test logs.
func (r *SMTPResult) String() string {
	if r == nil {
		return "<nil SMTPResult>"
	}
	var b strings.Builder
	line := func(stage string, rep *Reply) {
		if rep != nil {
			fmt.Fprintf(&b, "%s: %s\n", stage, rep)
		}
	}
	line("greeting", r.Greeting)
	line("EHLO", r.Helo)
	line("AUTH", r.Auth)
	line("MAIL", r.Mail)
	for _, rr := range r.Rcpts {
		rep := rr.Reply
		line("RCPT <"+rr.Rcpt+">", &rep)
	}
	line("DATA", r.Data)
	line("end of data", r.EndOfData)
	return strings.TrimRight(b.String(), "\n")
}

// SendMail runs one SMTP transaction against addr ("host:port") as
// described by opts and records every reply. 4xx and 5xx replies are not
// errors: they are returned in the result, and the transaction continues as
// far as a real client would (past rejected recipients; DATA only if a
// recipient was accepted; nothing after a 421 or a failed EHLO, AUTH or
// MAIL). The returned error reports connection-level failures (cannot
// connect, connection dropped, time-out); the result then holds the replies
// received before the failure.
func SendMail(addr string, opts SendOptions) (*SMTPResult, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	if opts.LocalAddr != "" {
		ip := net.ParseIP(opts.LocalAddr)
		if ip == nil {
			return nil, fmt.Errorf("testenv: SendMail: invalid LocalAddr %q", opts.LocalAddr)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testenv: SendMail: %w", err)
	}
	tc := &tapConn{Conn: nc}
	c := smtp.NewClient(tc)
	defer c.Close()
	c.CommandTimeout = timeout
	c.SubmissionTimeout = timeout

	s := &smtpTalk{addr: addr, c: c, tc: tc, res: &SMTPResult{}}
	// Each phase records its replies; it ends the talk (done) when the
	// transaction cannot go on, after QUIT unless the server said 421.
	for _, phase := range []func(SendOptions) (done bool, err error){s.hello, s.auth, s.mail, s.rcpts, s.data} {
		if done, err := phase(opts); err != nil || done {
			return s.res, err
		}
	}
	return s.res, nil
}

// smtpTalk is one SendMail conversation.
type smtpTalk struct {
	addr string
	c    *smtp.Client
	tc   *tapConn
	res  *SMTPResult
}

// step runs one client call and records the server's reply to it. It
// returns an error only for connection-level failures; an SMTP reply is
// stored in *dst whatever its code.
func (s *smtpTalk) step(dst **Reply, call func() error) error {
	s.tc.take()
	callErr := call()
	replies := parseReplies(s.tc.take())
	var se *smtp.SMTPError
	switch {
	case errors.As(callErr, &se):
		rep := Reply{Code: se.Code, Text: se.Message}
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			rep.EnhancedCode = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		*dst = &rep
		return nil
	case callErr != nil:
		return callErr
	case len(replies) == 0:
		return errors.New("no reply recorded")
	default:
		rep := replies[len(replies)-1]
		*dst = &rep
		return nil
	}
}

func (s *smtpTalk) fail(stage string, err error) (bool, error) {
	return true, fmt.Errorf("testenv: SendMail to %s: %s: %w", s.addr, stage, err)
}

// quitIfStopped sends QUIT and ends the talk when the transaction cannot go
// on after rep.
func (s *smtpTalk) quitIfStopped(rep *Reply) bool {
	if rep == nil || !rep.OK() || rep.Code == 421 {
		s.c.Quit()
		return true
	}
	return false
}

// hello reads the banner and sends EHLO (go-smtp's Hello does both).
func (s *smtpTalk) hello(opts SendOptions) (bool, error) {
	helo := opts.Helo
	if helo == "" {
		helo = "client.test"
	}
	s.tc.take()
	helloErr := s.c.Hello(helo)
	replies := parseReplies(s.tc.take())
	if len(replies) > 0 {
		g := replies[0]
		s.res.Greeting = &g
	}
	if len(replies) > 1 {
		h := replies[len(replies)-1]
		s.res.Helo = &h
	}
	var se *smtp.SMTPError
	if helloErr != nil {
		if !errors.As(helloErr, &se) {
			return s.fail("greeting/EHLO", helloErr)
		}
		s.c.Quit()
		return true, nil
	}
	return false, nil
}

func (s *smtpTalk) auth(opts SendOptions) (bool, error) {
	if opts.Auth == nil {
		return false, nil
	}
	err := s.step(&s.res.Auth, func() error {
		return s.c.Auth(sasl.NewPlainClient("", opts.Auth.Username, opts.Auth.Password))
	})
	if err != nil {
		return s.fail("AUTH", err)
	}
	return s.quitIfStopped(s.res.Auth), nil
}

func (s *smtpTalk) mail(opts SendOptions) (bool, error) {
	mo := &smtp.MailOptions{Size: opts.Size}
	for _, a := range append([]string{opts.From}, opts.To...) {
		if !isASCII(a) {
			mo.UTF8 = true
		}
	}
	if err := s.step(&s.res.Mail, func() error { return s.c.Mail(opts.From, mo) }); err != nil {
		return s.fail("MAIL", err)
	}
	return s.quitIfStopped(s.res.Mail), nil
}

// rcpts sends every RCPT; the talk ends when none was accepted (QUIT) or
// the server said 421.
func (s *smtpTalk) rcpts(opts SendOptions) (bool, error) {
	accepted := 0
	for _, rcpt := range opts.To {
		var rep *Reply
		if err := s.step(&rep, func() error { return s.c.Rcpt(rcpt, nil) }); err != nil {
			return s.fail("RCPT <"+rcpt+">", err)
		}
		s.res.Rcpts = append(s.res.Rcpts, RcptReply{Rcpt: rcpt, Reply: *rep})
		if rep.Code == 421 {
			return true, nil
		}
		if rep.OK() {
			accepted++
		}
	}
	if accepted == 0 {
		s.c.Quit()
		return true, nil
	}
	return false, nil
}

func (s *smtpTalk) data(opts SendOptions) (bool, error) {
	var w *smtp.DataCommand
	if err := s.step(&s.res.Data, func() error {
		var err error
		w, err = s.c.Data()
		return err
	}); err != nil {
		return s.fail("DATA", err)
	}
	if s.quitIfStopped(s.res.Data) {
		return true, nil
	}
	if _, err := w.Write(opts.Data); err != nil {
		return s.fail("writing message", err)
	}
	if err := s.step(&s.res.EndOfData, func() error {
		_, err := w.CloseWithResponse()
		return err
	}); err != nil {
		return s.fail("end of data", err)
	}
	if s.res.EndOfData.Code != 421 {
		s.c.Quit()
	}
	return true, nil
}

// tapConn keeps a copy of everything read from the connection, so that the
// text of positive replies (which go-smtp's client does not return) can be
// recorded too. The client does not pipeline, so between sending a command
// and returning, it reads exactly the reply to that command.
type tapConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// take returns and clears what was read since the last call.
func (c *tapConn) take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.buf.String()
	c.buf.Reset()
	return s
}

// parseReplies splits raw server output into replies.
func parseReplies(raw string) []Reply {
	var out []Reply
	var code int
	var lines []string
	for l := range strings.SplitSeq(raw, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if len(l) < 3 {
			continue
		}
		c, err := strconv.Atoi(l[:3])
		if err != nil {
			continue
		}
		code = c
		last := len(l) == 3 || l[3] == ' '
		text := ""
		if len(l) > 4 {
			text = l[4:]
		}
		lines = append(lines, text)
		if last {
			out = append(out, makeReply(code, lines))
			lines = nil
		}
	}
	return out
}

// makeReply builds a Reply, taking the enhanced status code from the first
// line and removing it from every line.
func makeReply(code int, lines []string) Reply {
	r := Reply{Code: code}
	if first, _, _ := strings.Cut(lines[0], " "); isEnhancedCode(first, code) {
		r.EnhancedCode = first
		for i, l := range lines {
			lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, first), " ")
		}
	}
	r.Text = strings.Join(lines, "\n")
	return r
}

// isEnhancedCode reports whether s looks like an RFC 3463 status code of the
// same class as the reply code.
func isEnhancedCode(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || p == "" {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
