package reputation

import (
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
)

// ReaderStats count what the delivery-log reader did.
type ReaderStats struct {
	// Lines read; Results are delivery lines among them.
	Lines, Results atomic.Int64
	// ByClass counts results matched to a customer and counted, by class
	// (in Classes order).
	ByClass [5]atomic.Int64
	// Unmatched counts results whose queue id the gateway did not accept
	// (or has forgotten); Duplicates results already counted.
	Unmatched, Duplicates atomic.Int64
	// StoreErrors counts results lost to a store failure.
	StoreErrors atomic.Int64
	// Foreign counts delivery lines not logged by a configured Postfix
	// delivery agent (another program, or no syslog header in a file):
	// ignored.
	Foreign atomic.Int64
}

// Reader reads Postfix's delivery results and counts them per customer.
type Reader struct {
	svc   *Service
	Stats *ReaderStats
	// Retry is how long a store failure is retried for one result.
	Retry time.Duration
	// Status is what the reader is doing (state, last line, lag, errors).
	Status *FollowStatus
	// Clock paces the follower (polls and back-off); default SystemWaiter.
	Clock Waiter
	// Open opens the followed file; default OpenRegular.
	Open func(path string) (*os.File, error)
}

// NewReader returns a reader counting into svc's backend.
func NewReader(svc *Service) *Reader {
	return &Reader{svc: svc, Stats: &ReaderStats{}, Retry: 5 * time.Second, Status: &FollowStatus{}, Clock: SystemWaiter{}}
}

// Run reads the configured source until ctx ends: the followed file, or
// stdin for "-". A followed file is never given up (see Follower); it
// returns only when ctx ends or standard input does.
func (r *Reader) Run(ctx context.Context, stdin io.Reader) error {
	d := r.svc.Reputation().Deliveries
	fn := func(line string) { r.Line(ctx, line) }
	if d.Source == "-" {
		r.Status.begin("-", r.Clock.Now())
		r.Status.following()
		r.svc.Log.Info("reading delivery results", "source", "stdin")
		err := ReadLines(ctx, stdin, func(line string) {
			r.Status.line(r.Clock.Now())
			fn(line)
		})
		if ctx.Err() == nil {
			r.Status.ended(err, r.Clock.Now())
			r.svc.Log.Error("delivery results: end of standard input, nothing more is counted until restart", "event", "delivery_log", "err", err)
		}
		return err
	}
	r.svc.Log.Info("following delivery log", "source", d.Source, "from_start", d.FromStart, "egress", egressLog(d.Egress),
		"address_format", string(d.AddressFormat), "syslog_names", d.SyslogNames)
	f := &Follower{Path: d.Source, FromStart: d.FromStart, Poll: d.Poll, Clock: r.Clock, Open: r.Open, Log: r.svc.Log, Status: r.Status}
	return f.Run(ctx, fn)
}

// Snapshot is the reader's status now.
func (r *Reader) Snapshot() FollowSnapshot { return r.Status.Snapshot(r.Clock.Now()) }

// Degraded says why the reader is not up to date ("" when it is).
func (r *Reader) Degraded() string {
	return r.Snapshot().Degraded(r.svc.Reputation().Deliveries.MaxLag)
}

// seenTTL is how long the results counted for a message are remembered
// (so that a log read again counts nothing twice): the bounce window and
// a day, at most as long as the queue id itself. Older results no longer
// weigh on the rate.
func seenTTL(cfg *Config) time.Duration {
	d := cfg.Bounces.Window + 24*time.Hour
	if q := cfg.Deliveries.QueueIDTTL; q < d {
		d = q
	}
	return d
}

// Line handles one log line: a delivery result is classified, matched to
// its customer by queue id and counted, and logged in one line.
func (r *Reader) Line(ctx context.Context, line string) {
	r.Stats.Lines.Add(1)
	dc := &r.svc.Reputation().Deliveries
	d, ok := ParseLineFormat(line, dc.AddressFormat)
	if !ok {
		return
	}
	// Only Postfix's own delivery agents: a line another program logged
	// (its own tag on a shared syslog) is not a result. Without a syslog
	// header only from standard input (journalctl chose them by unit), not
	// from a file syslog or postlogd writes.
	fileSource := dc.Source != "" && dc.Source != "-"
	if d.Program == "" && fileSource || d.Program != "" && !dc.TrustedProgram(d.Program) {
		r.Stats.Foreign.Add(1)
		r.svc.Log.Debug("delivery line from a program that is not a configured Postfix delivery agent: ignored", "event", "delivery_foreign", "program", d.Program, "queue_id", d.QueueID)
		return
	}
	class, ok := d.Class()
	if !ok {
		return
	}
	r.Stats.Results.Add(1)
	res := Result{QueueID: d.QueueID, RcptHash: r.svc.rcptHash(d.To), Class: class}
	// Only a result from a receiver (relay=host[addr]:port) left through an
	// egress address; relay=none (no host found, nothing connected) did not.
	if d.Relay != "" && d.Relay != "none" {
		res.Egress = dc.EgressFor(d.Program)
	}
	var (
		customer string
		counted  bool
		counts   Counts
		err      error
	)
	deadline := time.Now().Add(r.Retry)
	for {
		now := r.svc.Clock.Now()
		since, _ := r.svc.window(now)
		sctx, cancel := r.svc.Store.Context(ctx)
		customer, counted, counts, err = r.svc.Backend.Record(sctx, res, now, since, seenTTL(r.svc.Reputation()))
		cancel()
		if err == nil || !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	log := r.svc.Log
	if err != nil {
		r.Stats.StoreErrors.Add(1)
		log.Error("delivery result not counted: store failed", "event", "delivery", "queue_id", d.QueueID, "class", string(class), "err", err)
		return
	}
	if customer == "" {
		r.Stats.Unmatched.Add(1)
		log.Debug("delivery result of a message the gateway did not accept", "event", "delivery", "queue_id", d.QueueID, "class", string(class))
		return
	}
	if !counted {
		r.Stats.Duplicates.Add(1)
		return
	}
	for i, c := range Classes {
		if c == class {
			r.Stats.ByClass[i].Add(1)
		}
	}
	st := r.svc.judge(customer, counts)
	attrs := []any{"event", "delivery", "queue_id", d.QueueID, "customer", customer, "class", string(class),
		"status", d.Status, "dsn", d.DSN, "rcpt_hash", res.RcptHash, "egress", res.Egress,
		"rate", pct(st.Rate), "hard", st.Hard, "final", st.Final(), "level", st.Level}
	if r.svc.Config().Log.PlainRecipients {
		attrs = append(attrs, "rcpt", d.To)
	}
	if class == Sent {
		log.Debug("delivery result", attrs...)
	} else {
		log.Info("delivery result", attrs...)
	}
	r.svc.noteLevel(st)
}

// egressLog is an egress address for the log ("" when unset).
func egressLog(a config.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
