package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/store"
)

// maxBatch is the most events written in one store round trip.
const maxBatch = 512

// rest is how long the writer waits after a batch that was not full before
// it writes again, so that recording takes no CPU the milter needs: at
// most 10 batches a second (each an EVALSHA and its Redis CPU, or a
// write(2) to the events file) instead of one per decision, every batch
// carrying what came in meanwhile (500 events at 5000 decisions a
// second, under maxBatch). The delay costs nothing that needs to be
// prompt: each decision's log line, the full record for the provider's log
// store, is written at once by the engine; the stored record serves
// lookups (the admin API calls Flush, which ends the rest, before it
// answers) and reports over hours and days. What a crash can lose is what
// was queued and the batch being written, at most about rest × rate
// events plus one batch; they are still in the log lines. The writer does
// not wait out the rest when the queue is half full (wakeAt), so a small
// events.buffer does not overflow at a high rate either.
const rest = 100 * time.Millisecond

// sharedKind is the store.Handle.Shared kind of the recorder.
const sharedKind = "events"

// ErrNoRecord is returned by Open for a memory store without an events file:
// the events then live only inside the running gateway (ask its admin API).
var ErrNoRecord = errors.New("memory store without events.file: the events live only in the running gateway; query its admin API (/api/events, /api/report)")

// Reader queries the record.
type Reader struct {
	b backend
}

// Events returns the events q selects, newest first.
func (r *Reader) Events(ctx context.Context, q Query) ([]Event, error) {
	return r.b.query(ctx, q)
}

// Aggregates returns the counters q selects, by bucket start then customer.
func (r *Reader) Aggregates(ctx context.Context, q AggQuery) ([]Bucket, error) {
	return r.b.aggregates(ctx, q)
}

// Recorder records decisions. It implements decision.Observer; Observe never
// blocks. There is one Recorder per store handle (store.Handle.Shared), so
// the milter and the admin API share it; Close (or the handle's Close)
// flushes what is queued.
type Recorder struct {
	Reader
	log     *slog.Logger
	timeout time.Duration

	ch     chan *decision.Decision
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool
	// wake ends the writer's rest: sent (never blocking) by Observe when
	// wakeAt events wait and by Flush.
	wake   chan struct{}
	wakeAt int

	// progress is closed and replaced after each batch, for Flush.
	progMu   sync.Mutex
	progress chan struct{}

	// dropping is set by the first drop of a burst (which logs it) and
	// cleared by the writer when the queue has room again (which logs the
	// burst's count); burstBase is Dropped at the burst's start (the
	// writer's).
	dropping  atomic.Bool
	burstBase uint64

	dropped   atomic.Uint64
	enqueued  atomic.Uint64
	processed atomic.Uint64
	recorded  atomic.Uint64
	failed    atomic.Uint64
	lastWarn  atomic.Int64
}

// FilePath returns the JSON-lines file of the memory backend: events.file,
// else events.jsonl under store.path, else "" (none; also for "off").
func FilePath(h *store.Handle, cfg config.EventsConfig) string {
	switch {
	case cfg.File == "off":
		return ""
	case cfg.File != "":
		return cfg.File
	case h.Path != "":
		return filepath.Join(h.Path, "events.jsonl")
	}
	return ""
}

func openBackend(h *store.Handle, cfg config.EventsConfig, appendTo bool) (backend, error) {
	if h.Backend == store.Redis {
		if appendTo {
			// EVALSHA from the first batch on; a failure here is not
			// fatal (Script.Run loads on NOSCRIPT).
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = h.LoadScripts(ctx, dayScript, aggScript)
			cancel()
		}
		return &redisBackend{h: h, retention: cfg.Retention, accepted: cfg.AcceptedRetention, aggKeep: cfg.AggregateRetention, cap: cfg.DailyCap}, nil
	}
	m := newMemory(h.Clock, cfg.Ring, cfg.Retention, cfg.AggregateRetention)
	path := FilePath(h, cfg)
	if path == "" {
		if !appendTo {
			return nil, ErrNoRecord
		}
		return m, nil
	}
	if err := m.openFile(path, appendTo); err != nil {
		return nil, err
	}
	return m, nil
}

// Open opens the record for reading, for the commands: with Redis, the
// store itself; with the memory store, the events file (a snapshot of what
// the gateway wrote so far), or ErrNoRecord when there is none.
func Open(h *store.Handle, cfg config.EventsConfig) (*Reader, error) {
	b, err := openBackend(h, cfg, false)
	if err != nil {
		return nil, err
	}
	return &Reader{b: b}, nil
}

// New returns the handle's recorder, starting it on first use. With the
// memory store it loads the events file (if any) and appends to it.
func New(h *store.Handle, cfg config.EventsConfig, log *slog.Logger) (*Recorder, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v, err := h.Shared(sharedKind, func() (any, error) {
		b, err := openBackend(h, cfg, true)
		if err != nil {
			return nil, err
		}
		return newRecorder(b, cfg.Buffer, log), nil
	})
	if err != nil {
		return nil, err
	}
	r, ok := v.(*Recorder)
	if !ok {
		return nil, fmt.Errorf("events: store handle holds a %T as %q", v, sharedKind)
	}
	return r, nil
}

// newRecorder starts a recorder writing to b, with a queue of buf events
// (config.DefaultEventsBuffer when buf <= 0).
func newRecorder(b backend, buf int, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if buf <= 0 {
		buf = config.DefaultEventsBuffer
	}
	r := &Recorder{Reader: Reader{b: b}, log: log, timeout: 5 * time.Second,
		ch: make(chan *decision.Decision, buf), stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1), wakeAt: min(maxBatch, (buf+1)/2), progress: make(chan struct{})}
	go r.run()
	return r
}

// Observe queues d for recording and returns at once; when the queue is
// full, d is dropped and counted (Dropped), and the first drop of a burst
// is logged (the writer logs the burst's count when the queue has room
// again). d must not change afterwards (the gateway builds one Decision
// per decision).
func (r *Recorder) Observe(d *decision.Decision) {
	if d == nil || r.closed.Load() {
		return
	}
	select {
	case r.ch <- d:
		r.enqueued.Add(1)
		if len(r.ch) >= r.wakeAt {
			r.kick()
		}
	default:
		r.dropped.Add(1)
		if r.dropping.CompareAndSwap(false, true) {
			r.log.Warn("events: queue full, dropping events until the writer catches up (the decision log lines are complete)",
				"queue", cap(r.ch), "dropped_total", r.dropped.Load())
		}
	}
}

// kick ends the writer's rest, if it rests, without waiting.
func (r *Recorder) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Dropped counts events dropped because the queue was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Recorded counts events stored.
func (r *Recorder) Recorded() uint64 { return r.recorded.Load() }

// Failed counts events lost because the store failed.
func (r *Recorder) Failed() uint64 { return r.failed.Load() }

// Queued is the number of events waiting for the writer.
func (r *Recorder) Queued() int { return len(r.ch) }

func (r *Recorder) run() {
	defer close(r.done)
	batch := make([]Event, 0, maxBatch)
	// One timer for every rest, stopped in between (with Go 1.23 timers
	// a Reset needs no draining).
	t := time.NewTimer(rest)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case d := <-r.ch:
			batch = append(batch[:0], FromDecision(d))
			batch = r.fill(batch)
			r.flush(batch)
			if len(batch) < maxBatch {
				t.Reset(rest)
				select {
				case <-t.C:
				case <-r.wake:
					t.Stop()
				case <-r.stop:
					t.Stop()
				}
			}
		case <-r.stop:
			for {
				batch = r.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				r.flush(batch)
			}
		}
	}
}

// fill takes what is queued, up to maxBatch, without waiting.
func (r *Recorder) fill(batch []Event) []Event {
	for len(batch) < maxBatch {
		select {
		case d := <-r.ch:
			batch = append(batch, FromDecision(d))
		default:
			return batch
		}
	}
	return batch
}

func (r *Recorder) flush(batch []Event) {
	defer r.progressed(len(batch))
	for len(batch) > 0 {
		n := min(len(batch), eventsPerCall)
		r.store(batch[:n])
		batch = batch[n:]
	}
}

// eventsPerCall bounds the events stored by one store call. Redis runs one
// script at a time, and the milter's stage batches wait behind whatever
// runs: storing costs about 13 µs of Redis time per event here, so a call
// of 32 holds Redis for about 0.4 ms, where a writer's whole batch (about
// 75 events after a rest at 750 messages a second) held it for 1-2 ms and
// set the milter's p99 at RCPT and end of message (docs/performance.md).
// Each call is its own round trip; other clients' commands run between.
const eventsPerCall = 32

// store writes one call's events and counts them recorded or lost.
func (r *Recorder) store(evs []Event) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if err := r.b.write(ctx, evs); err != nil {
		r.failed.Add(uint64(len(evs)))
		// One warning a minute at most: a store outage must not flood the log.
		now := time.Now().Unix()
		if last := r.lastWarn.Load(); now-last >= 60 && r.lastWarn.CompareAndSwap(last, now) {
			r.log.Warn("events: recording failed, events lost", "events", len(evs), "lost_total", r.failed.Load(), "err", err)
		}
		return
	}
	r.recorded.Add(uint64(len(evs)))
}

// progressed counts a batch as processed, tells Flush, and ends a burst of
// drops once the queue has room again (half of it free).
func (r *Recorder) progressed(n int) {
	r.processed.Add(uint64(n))
	r.progMu.Lock()
	close(r.progress)
	r.progress = make(chan struct{})
	r.progMu.Unlock()
	if r.dropping.Load() && len(r.ch) <= cap(r.ch)/2 {
		r.dropping.Store(false)
		total := r.dropped.Load()
		r.log.Warn("events: queue has room again", "dropped", total-r.burstBase, "dropped_total", total)
		r.burstBase = total
	}
}

// Flush waits until every event queued before the call has been written
// (or has failed), ending the writer's rest so that it writes at once: the
// admin API calls it before answering from the record, so that a report
// includes the decisions just made.
func (r *Recorder) Flush(ctx context.Context) error {
	target := r.enqueued.Load()
	for {
		// The channel is taken before processed is read: a batch
		// counted after the check closes this channel.
		r.progMu.Lock()
		progress := r.progress
		r.progMu.Unlock()
		if r.processed.Load() >= target {
			return nil
		}
		r.kick() // no rest while someone waits
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			return nil
		case <-progress:
		}
	}
}

// Close stops recording: what is queued is written, the file closed.
func (r *Recorder) Close() error {
	var err error
	r.once.Do(func() {
		r.closed.Store(true)
		close(r.stop)
		<-r.done
		err = r.b.close()
	})
	return err
}
