// Package loadgen drives a milter as an MTA would (d--j/go-milter's client
// side): N concurrent sessions send M messages in total, and it measures
// messages per second and the latency of each reply (MAIL, RCPT, end of
// message). It also provides a do-nothing milter to compare against. It
// talks to loopback only; runs are bounded in count and time.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gm "github.com/d--j/go-milter"

	"github.com/aupguard/aupguard/internal/milterconn"
)

// Options describe a load run.
type Options struct {
	// Network and Address of the milter ("tcp", "127.0.0.1:8891").
	Network, Address string
	Sessions         int
	Messages         int
	// Size is the approximate message size in bytes.
	Size int
	// Rcpts per message.
	Rcpts int
	// Rate, when > 0, paces the run to this many messages per second in
	// total (for latency at a given load); 0 is as fast as possible.
	Rate float64
	// Login ({auth_authen}) and Client (client address) identify the customer.
	Login, Client string
	From          string
	// Senders, when not empty, are used in turn, message n by Senders[n %
	// len]: a run with many distinct customers (each its Login, Client and
	// From instead of the fields above).
	Senders []Sender
	// RcptDomain receives the mail; recipients are unique per message
	// unless SameRcpt.
	RcptDomain string
	SameRcpt   bool
	// Timeout bounds the whole run (default 5 minutes).
	Timeout time.Duration
	// Progress, when set, receives one line every Interval (default 1s):
	// the time into the run, messages done and errors in that interval,
	// so that a run across an event (a store outage) shows its course.
	Progress io.Writer
	Interval time.Duration
}

// Sender is one customer of a run with many.
type Sender struct {
	Login, Client, From string
}

// Result is what a run measured.
type Result struct {
	Messages  int
	Accepted  int
	Refused   int
	Errors    int
	Elapsed   time.Duration
	PerSecond float64
	// Latency percentiles by stage ("mail", "rcpt", "eom").
	Latency map[string]Percentiles
	// FirstError is the first protocol error seen, if any.
	FirstError string
}

// Percentiles of one stage's reply latency.
type Percentiles struct {
	P50, P90, P99, Max time.Duration
}

func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "messages %d accepted %d refused %d errors %d in %.2fs: %.0f msg/s\n", r.Messages, r.Accepted, r.Refused, r.Errors, r.Elapsed.Seconds(), r.PerSecond)
	for _, st := range []string{"mail", "rcpt", "eom"} {
		if p, ok := r.Latency[st]; ok {
			fmt.Fprintf(&b, "  %-4s p50 %-9v p90 %-9v p99 %-9v max %v\n", st, p.P50.Round(time.Microsecond), p.P90.Round(time.Microsecond), p.P99.Round(time.Microsecond), p.Max.Round(time.Microsecond))
		}
	}
	if r.FirstError != "" {
		fmt.Fprintf(&b, "  first error: %s\n", r.FirstError)
	}
	return b.String()
}

type sample struct{ mail, rcpt, eom []time.Duration }

// Run performs a load run.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Sessions <= 0 || o.Messages <= 0 {
		return Result{}, errors.New("sessions and messages must be positive")
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Rcpts <= 0 {
		o.Rcpts = 1
	}
	if o.RcptDomain == "" {
		o.RcptDomain = "example.org"
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	body := makeBody(o.Size)
	// Replies are waited for as long as Postfix waits for them
	// (milter_content_timeout, 300 s, bounds a reply to the body and end of
	// message), not the library's 10 s: with hundreds of large messages in
	// flight on two cores, the gateway may still be reading a connection's
	// buffered body when its end of message arrives.
	client := gm.NewClient(o.Network, o.Address, gm.WithActions(gm.AllClientSupportedActionMasks),
		gm.WithReadTimeout(postfixContentTimeout))
	var next atomic.Int64
	var accepted, refused, errs atomic.Int64
	var firstErr atomic.Value
	samples := make([]sample, o.Sessions)
	var pace <-chan time.Time
	if o.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer t.Stop()
		pace = t.C
	}
	start := time.Now()
	if o.Progress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go progress(o, start, stop, func() (int64, int64) { return accepted.Load() + refused.Load(), errs.Load() })
	}
	var wg sync.WaitGroup
	for i := 0; i < o.Sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := &samples[i]
			for ctx.Err() == nil {
				n := next.Add(1)
				if n > int64(o.Messages) {
					return
				}
				if pace != nil {
					select {
					case <-pace:
					case <-ctx.Done():
						return
					}
				}
				ok, err := oneMessage(client, o, n, body, s)
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case ok:
					accepted.Add(1)
				default:
					refused.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	r := Result{Accepted: int(accepted.Load()), Refused: int(refused.Load()), Errors: int(errs.Load()), Elapsed: el, Latency: map[string]Percentiles{}}
	r.Messages = r.Accepted + r.Refused + r.Errors
	r.PerSecond = float64(r.Accepted+r.Refused) / el.Seconds()
	if v := firstErr.Load(); v != nil {
		r.FirstError = v.(string)
	}
	var all sample
	for _, s := range samples {
		all.mail = append(all.mail, s.mail...)
		all.rcpt = append(all.rcpt, s.rcpt...)
		all.eom = append(all.eom, s.eom...)
	}
	for name, d := range map[string][]time.Duration{"mail": all.mail, "rcpt": all.rcpt, "eom": all.eom} {
		if len(d) > 0 {
			r.Latency[name] = percentiles(d)
		}
	}
	return r, ctx.Err()
}

// progress writes one line per interval until stop.
func progress(o Options, start time.Time, stop <-chan struct{}, counts func() (done, errs int64)) {
	iv := o.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	var lastDone, lastErrs int64
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			d, e := counts()
			fmt.Fprintf(o.Progress, "t=%5.1fs  %6.0f msg/s  errors %d\n", now.Sub(start).Seconds(), float64(d-lastDone)/iv.Seconds(), e-lastErrs)
			lastDone, lastErrs = d, e
		}
	}
}

// oneMessage runs one milter session for one message, as Postfix does for
// a client that sends one message per connection.
func oneMessage(c *gm.Client, o Options, n int64, body []byte, s *sample) (bool, error) {
	if len(o.Senders) > 0 {
		sd := o.Senders[n%int64(len(o.Senders))]
		o.Login, o.Client, o.From = sd.Login, sd.Client, sd.From
	}
	macros := gm.NewMacroBag()
	macros.Set(gm.MacroAuthAuthen, o.Login)
	macros.Set(gm.MacroQueueId, fmt.Sprintf("Q%X", n))
	macros.Set(gm.MacroDaemonName, "loadgen")
	cs, err := c.Session(macros)
	if err != nil {
		return false, err
	}
	defer cs.Close()
	if _, err := cs.Conn("client.test", gm.FamilyInet, 40000, o.Client); err != nil {
		return false, err
	}
	if _, err := cs.Helo("client.test"); err != nil {
		return false, err
	}
	t := time.Now()
	act, err := cs.Mail(o.From, fmt.Sprintf("SIZE=%d", len(body)+200))
	s.mail = append(s.mail, time.Since(t))
	if err != nil {
		return false, err
	}
	if act.StopProcessing() {
		return false, nil
	}
	var rcpts []string
	for i := 0; i < o.Rcpts; i++ {
		rc := fmt.Sprintf("user%d.%d@%s", n, i, o.RcptDomain)
		if o.SameRcpt {
			rc = fmt.Sprintf("user%d@%s", i, o.RcptDomain)
		}
		t = time.Now()
		act, err := cs.Rcpt(rc, "")
		s.rcpt = append(s.rcpt, time.Since(t))
		if err != nil {
			return false, err
		}
		if !act.StopProcessing() {
			rcpts = append(rcpts, rc)
		}
	}
	if len(rcpts) == 0 {
		return false, cs.Abort(nil)
	}
	if _, err := cs.DataStart(); err != nil {
		return false, err
	}
	// Postfix does not pass the Received: it adds to the milter, so the
	// header section is the client's as submitted.
	hdrs := [][2]string{
		{"From", " Sender <" + o.From + ">"},
		{"To", " <" + rcpts[0] + ">"},
		{"Subject", fmt.Sprintf(" load message %d", n)},
		{"Date", " " + time.Now().Format(time.RFC1123Z)},
		{"Message-ID", fmt.Sprintf(" <%d.%d@loadgen>", n, time.Now().UnixNano())},
		{"MIME-Version", " 1.0"},
		{"Content-Type", " text/plain; charset=utf-8"},
	}
	for _, h := range hdrs {
		if _, err := cs.HeaderField(h[0], h[1], nil); err != nil {
			return false, err
		}
	}
	if _, err := cs.HeaderEnd(); err != nil {
		return false, err
	}
	// BodyReadFrom sends the body in chunks and then end of message; the
	// latency measured is the end-of-message reply (body writes are not
	// answered: the gateway negotiates no reply to body chunks).
	t = time.Now()
	_, act2, err := cs.BodyReadFrom(bytes.NewReader(body))
	s.eom = append(s.eom, time.Since(t))
	if err != nil {
		return false, err
	}
	return act2.Type == gm.ActionAccept || act2.Type == gm.ActionContinue, nil
}

// makeBody makes a text body of about size bytes in 76-character lines.
func makeBody(size int) []byte {
	if size <= 0 {
		size = 4096
	}
	line := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\r\n")
	var b bytes.Buffer
	for b.Len() < size {
		b.Write(line)
	}
	return b.Bytes()
}

func percentiles(d []time.Duration) Percentiles {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

// NopMilter is the do-nothing reference milter: it asks the MTA for no
// reply at any stage but end of message, where it accepts. Comparing the
// gateway's throughput with it shows the cost of the checks alone.
type NopMilter struct {
	srv *gm.Server
	ln  net.Listener
}

type nop struct{ gm.NoOpMilter }

func (nop) EndOfMessage(gm.Modifier) (*gm.Response, error) { return gm.RespAccept, nil }

// ListenNop starts a do-nothing milter on network/address.
func ListenNop(network, address string) (*NopMilter, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	srv := gm.NewServer(gm.WithMaximumVersion(6), gm.WithProtocols(gm.OptNoReplies|gm.OptNoUnknown|gm.OptNoData), gm.WithActions(0),
		gm.WithMilter(func() gm.Milter { return nop{} }))
	// The same transport as the gateway's, so that the comparison is of
	// the checks, not of system calls.
	ln = milterconn.Listener(ln)
	m := &NopMilter{srv: srv, ln: ln}
	go func() { _ = srv.Serve(ln) }()
	return m, nil
}

// Addr is the listener's address.
func (m *NopMilter) Addr() net.Addr { return m.ln.Addr() }

// Close stops the milter.
func (m *NopMilter) Close() error { return m.srv.Close() }

// postfixContentTimeout is Postfix's milter_content_timeout default, the
// longest it waits for a milter's reply to the message content.
const postfixContentTimeout = 300 * time.Second
