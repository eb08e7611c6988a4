package reputation

import (
	"context"
	"errors"
	"io"
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
}

// Reader reads Postfix's delivery results and counts them per customer.
type Reader struct {
	svc   *Service
	Stats *ReaderStats
	// Retry is how long a store failure is retried for one result.
	Retry time.Duration
}

// NewReader returns a reader counting into svc's backend.
func NewReader(svc *Service) *Reader {
	return &Reader{svc: svc, Stats: &ReaderStats{}, Retry: 5 * time.Second}
}

// Run reads the configured source until ctx ends: the followed file, or
// stdin for "-".
func (r *Reader) Run(ctx context.Context, stdin io.Reader) error {
	d := r.svc.Reputation().Deliveries
	fn := func(line string) { r.Line(ctx, line) }
	if d.Source == "-" {
		r.svc.Log.Info("reading delivery results", "source", "stdin")
		err := ReadLines(ctx, stdin, fn)
		r.svc.Log.Info("delivery results: end of standard input")
		return err
	}
	r.svc.Log.Info("following delivery log", "source", d.Source, "from_start", d.FromStart, "egress", egressLog(d.Egress))
	return Follow(ctx, d.Source, d.FromStart, d.Poll, fn)
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
	d, ok := ParseLine(line)
	if !ok {
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
		res.Egress = r.svc.Reputation().Deliveries.EgressFor(d.Program)
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
