package content

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// rspamdMaxReply bounds the JSON reply read from rspamd.
const rspamdMaxReply = 1 << 20

// rspamdTopSymbols is the number of symbols (highest scores first) kept
// in a finding's attributes.
const rspamdTopSymbols = 12

// SpamScore is the spam_score check: each message is posted to rspamd's
// /checkv2 as its body arrives (the request body is a pipe from the body
// chunks; nothing is buffered whole), with the metadata rspamd uses
// (client IP, HELO, envelope, the customer id as the authenticated user,
// the queue id), and rspamd's score is mapped to the customer's
// thresholds at end of message.
type SpamScore struct {
	cfg    RspamdConfig
	all    *Config
	client *http.Client
	slots  limiter
	br     *breaker
	log    *slog.Logger
}

// NewSpamScore builds spam_score; an empty URL makes it a check that asks
// for no body and finds nothing.
func NewSpamScore(c *Config, clk clock.Clock, log *slog.Logger) *SpamScore {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &SpamScore{cfg: c.Rspamd, all: c, log: log, br: &breaker{clk: clk}}
	if c.Rspamd.URL != "" {
		s.slots = make(limiter, c.Rspamd.MaxConcurrent)
		s.client = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost:   c.Rspamd.MaxConcurrent,
			MaxConnsPerHost:       c.Rspamd.MaxConcurrent,
			ResponseHeaderTimeout: c.Rspamd.Timeout,
			IdleConnTimeout:       time.Minute,
			DisableCompression:    true,
			Proxy:                 nil, // local engine: never through a proxy
		}}
	}
	return s
}

// Name implements policy.Check.
func (*SpamScore) Name() string { return SpamCheck }

// spamOf is the spam check's scan of the message.
var spamOf = policy.NewState[*spamScan]()

// rspamdReply is the part of /checkv2's JSON answer the check reads.
type rspamdReply struct {
	Score   float64 `json:"score"`
	Action  string  `json:"action"`
	Symbols map[string]struct {
		Score float64 `json:"score"`
	} `json:"symbols"`
}

// spamResult is the outcome of one request.
type spamResult struct {
	reply rspamdReply
	err   error
}

// spamScan is one message's request to rspamd.
type spamScan struct {
	s      *SpamScore
	t      *policy.Txn
	pw     *io.PipeWriter
	res    chan spamResult
	cancel context.CancelFunc
	err    error // not sent (breaker open, no slot)
	closed bool
	// aborted is set by Finish before it ends a running request, so that
	// the request's failure is not taken for an outage.
	aborted atomic.Bool
}

// Body implements policy.BodyChecker.
func (s *SpamScore) Body(t *policy.Txn) io.Writer {
	if s.cfg.URL == "" {
		return nil
	}
	sc := &spamScan{s: s, t: t}
	spamOf.Set(t, sc)
	return sc
}

// open starts the request: the header section goes first, the body
// chunks follow through the pipe.
func (sc *spamScan) open() {
	if sc.pw != nil || sc.err != nil {
		return
	}
	ok, probe := sc.s.br.allow()
	if !ok {
		sc.err = errCircuitOpen
		return
	}
	if err := sc.s.slots.acquire(sc.s.cfg.Timeout); err != nil {
		sc.s.br.abandon(probe)
		sc.err = err
		return
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), sc.s.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(sc.s.cfg.URL, "/")+"/checkv2", pr)
	if err != nil {
		cancel()
		sc.s.slots.release()
		sc.s.br.abandon(probe)
		sc.err = err
		return
	}
	sc.setHeaders(req.Header)
	sc.pw, sc.cancel = pw, cancel
	res := make(chan spamResult, 1)
	sc.res = res
	aborted := &sc.aborted
	go func() {
		r := sc.s.do(req)
		pr.CloseWithError(errStopped) // a writer still writing returns at once
		cancel()
		sc.s.slots.release()
		var se *scanAnswerError
		if aborted.Load() {
			sc.s.br.abandon(probe) // ended by Finish: no outcome
		} else {
			sc.s.br.done(r.err != nil && !errors.As(r.err, &se))
		}
		res <- r
	}()
	var hdr bytes.Buffer
	hdr.Grow(int(sc.t.HeaderBytes) + 2)
	for _, h := range sc.t.Headers {
		hdr.WriteString(h.Name)
		hdr.WriteByte(':')
		hdr.WriteString(h.Value)
		hdr.WriteString("\r\n")
	}
	hdr.WriteString("\r\n")
	_, _ = pw.Write(hdr.Bytes())
}

// setHeaders sets the metadata rspamd's protocol takes as request headers.
func (sc *spamScan) setHeaders(h http.Header) {
	t := sc.t
	if c := t.Conn; c != nil {
		if c.ClientAddr.IsValid() {
			h.Set("IP", c.ClientAddr.String())
		}
		if v := headerSafe(c.Helo); v != "" {
			h.Set("Helo", v)
		}
		if v := headerSafe(c.ClientName); v != "" && v != "unknown" {
			h.Set("Hostname", v)
		}
	}
	if v := headerSafe(t.MailFrom.String()); v != "" {
		h.Set("From", v)
	}
	for _, r := range t.Rcpts {
		if v := headerSafe(r.Addr.String()); v != "" {
			h.Add("Rcpt", v)
		}
	}
	if t.Customer != nil {
		h.Set("User", headerSafe(t.Customer.ID))
	}
	if v := headerSafe(t.QueueID); v != "" {
		h.Set("Queue-Id", v)
	}
	if sc.s.cfg.Password != "" {
		h.Set("Password", sc.s.cfg.Password)
	}
}

// headerSafe drops what an HTTP header value may not hold.
func headerSafe(v string) string {
	if strings.ContainsAny(v, "\r\n\x00") {
		return strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == 0 {
				return -1
			}
			return r
		}, v)
	}
	return v
}

// scanAnswerError is an answer of the engine that is not a verdict (an
// HTTP error status): an error for the message, not an outage.
type scanAnswerError struct{ msg string }

func (e *scanAnswerError) Error() string { return e.msg }

// do sends the request and reads the answer.
func (s *SpamScore) do(req *http.Request) spamResult {
	resp, err := s.client.Do(req)
	if err != nil {
		return spamResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, rspamdMaxReply))
	if err != nil {
		return spamResult{err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return spamResult{err: &scanAnswerError{msg: fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, bytes.TrimSpace(body))}}
	}
	var r rspamdReply
	if err := json.Unmarshal(body, &r); err != nil {
		return spamResult{err: &scanAnswerError{msg: "unreadable reply: " + err.Error()}}
	}
	return spamResult{reply: r}
}

// Write implements io.Writer: one body chunk into the request.
func (sc *spamScan) Write(p []byte) (int, error) {
	sc.open()
	if sc.pw == nil {
		return 0, errStopped
	}
	if _, err := sc.pw.Write(p); err != nil {
		return 0, errStopped
	}
	return len(p), nil
}

// Close ends the request body (after the last chunk).
func (sc *spamScan) Close() error {
	sc.open()
	if sc.pw != nil && !sc.closed {
		sc.closed = true
		_ = sc.pw.Close()
	}
	return nil
}

// StartEOM implements policy.EOMStarter: the request body is ended if the
// session did not end it, so that rspamd scores while the checks before
// spam_score decide and the stage's store batch runs; EOM waits for the
// answer.
func (s *SpamScore) StartEOM(_ context.Context, t *policy.Txn) {
	if sc, _ := spamOf.Get(t); sc != nil {
		_ = sc.Close()
	}
}

// EOM implements policy.EOMChecker: rspamd's score against the customer's
// thresholds.
func (s *SpamScore) EOM(ctx context.Context, t *policy.Txn) ([]policy.Finding, error) {
	sc, _ := spamOf.Get(t)
	if sc == nil {
		return nil, nil
	}
	_ = sc.Close()
	if sc.err != nil {
		return nil, unavailable("rspamd", sc.err)
	}
	var r spamResult
	select {
	case r = <-sc.res:
		sc.res = nil
	case <-ctx.Done():
		return nil, unavailable("rspamd", ctx.Err())
	}
	if r.err != nil {
		return nil, unavailable("rspamd", r.err)
	}
	id := ""
	if t.Customer != nil {
		id = t.Customer.ID
	}
	hold, reject := s.all.Thresholds(id)
	score := r.reply.Score
	var name string
	var limit float64
	act := policy.Quarantine
	switch {
	case score >= reject:
		name, limit, act = FindingSpamReject, reject, policy.Reject
	case score >= hold:
		name, limit = FindingSpamHold, hold
	default:
		return nil, nil
	}
	syms := topSymbols(r.reply)
	f := policy.Finding{
		Name:   name,
		Detail: fmt.Sprintf("rspamd score %.2f at or above %.2f (rspamd action %q; symbols %s)", score, limit, r.reply.Action, syms),
		Action: act,
		Attrs:  map[string]string{"score": strconv.FormatFloat(score, 'f', 2, 64), "threshold": strconv.FormatFloat(limit, 'f', 2, 64), "symbols": syms},
	}
	if act == policy.Reject {
		f.Reply = replySpam
	}
	return []policy.Finding{f}, nil
}

// topSymbols renders the symbols with the highest scores, "NAME(score)"
// separated by commas.
func topSymbols(r rspamdReply) string {
	type sym struct {
		name  string
		score float64
	}
	list := make([]sym, 0, len(r.Symbols))
	for n, v := range r.Symbols {
		list = append(list, sym{n, v.Score})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].score != list[j].score {
			return list[i].score > list[j].score
		}
		return list[i].name < list[j].name
	})
	var b strings.Builder
	for i, s := range list {
		if i == rspamdTopSymbols {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s(%.2f)", s.name, s.score)
	}
	return b.String()
}

// Finish implements policy.Finisher: a request still running (the message
// was refused earlier or aborted) is cancelled; its goroutine gives the
// slot back.
func (s *SpamScore) Finish(_ context.Context, t *policy.Txn, _ bool) {
	sc, _ := spamOf.Get(t)
	if sc == nil || sc.pw == nil || sc.res == nil {
		return
	}
	sc.aborted.Store(true)
	sc.pw.CloseWithError(errStopped)
	sc.cancel()
	sc.res = nil
}
