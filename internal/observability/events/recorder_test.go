package events

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// countingBackend counts the batches written; with a gate, each write
// waits for a token from it.
type countingBackend struct {
	memory
	gate    chan struct{}
	batches atomic.Int64
	events  atomic.Int64
	largest atomic.Int64 // the most events in one call
}

func (b *countingBackend) write(ctx context.Context, evs []Event) error {
	if b.gate != nil {
		<-b.gate
	}
	b.batches.Add(1)
	b.events.Add(int64(len(evs)))
	for {
		l := b.largest.Load()
		if int64(len(evs)) <= l || b.largest.CompareAndSwap(l, int64(len(evs))) {
			break
		}
	}
	return b.memory.write(ctx, evs)
}

func newCounting(gated bool) *countingBackend {
	b := &countingBackend{memory: *newMemory(clock.System{}, 10000, time.Hour, time.Hour)}
	if gated {
		b.gate = make(chan struct{})
	}
	return b
}

// logRecords is a slog.Handler keeping what is logged.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

// lines returns the logged messages starting with prefix, each with its
// attributes.
func (h *logRecords) lines(prefix string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.recs {
		if len(r.Message) < len(prefix) || r.Message[:len(prefix)] != prefix {
			continue
		}
		m := map[string]any{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.Any()
			return true
		})
		out = append(out, m)
	}
	return out
}

func oneDecision() *gateway.Decision {
	return mkDecision(time.Now(), gateway.StageEOM, "REF0000001", "acme", policy.Accept, policy.Accept, "", "", 1)
}

func observeN(r *Recorder, n int) {
	d := oneDecision()
	for i := 0; i < n; i++ {
		r.Observe(d)
	}
}

// TestWriterRests: after a batch that was not full the writer waits rest
// before the next, unless the queue fills to wakeAt, someone flushes or
// the recorder closes. Time is synctest's: a check that the fake clock did
// not move is a check that nobody waited out the rest.
func TestWriterRests(t *testing.T) {
	tests := []struct {
		name string
		// after the first batch (1 event) has been written, while the
		// writer rests: what the test does, and what must have been
		// written (batches, events) with no time passing.
		during      func(r *Recorder)
		wantBatches int64
		wantEvents  int64
		wantWaited  bool // the fake clock moved: the rest was waited out
	}{
		{"events arriving wait for the rest to end", func(r *Recorder) {
			observeN(r, 3)
			synctest.Wait()
			if got := r.Recorded(); got != 1 {
				t.Errorf("%d recorded during the rest, want 1", got)
			}
			time.Sleep(rest)
			synctest.Wait()
		}, 2, 4, true},
		{"a half-full queue ends the rest", func(r *Recorder) {
			observeN(r, r.wakeAt)
			synctest.Wait()
		}, 2, 1 + 8, false},
		{"Flush ends the rest", func(r *Recorder) {
			observeN(r, 2)
			if err := r.Flush(context.Background()); err != nil {
				t.Error(err)
			}
		}, 2, 3, false},
		{"Close writes what is queued", func(r *Recorder) {
			observeN(r, 5)
			if err := r.Close(); err != nil {
				t.Error(err)
			}
		}, 2, 6, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newCounting(false)
				r := newRecorder(b, 16, slog.New(slog.DiscardHandler))
				defer r.Close()
				if r.wakeAt != 8 {
					t.Fatalf("wakeAt %d for a queue of 16, want 8", r.wakeAt)
				}
				observeN(r, 1)
				synctest.Wait() // written; the writer rests
				if b.batches.Load() != 1 {
					t.Fatalf("%d batches, want 1", b.batches.Load())
				}
				t0 := time.Now()
				tt.during(r)
				if got, want := b.batches.Load(), tt.wantBatches; got != want {
					t.Errorf("%d batches, want %d", got, want)
				}
				if got, want := b.events.Load(), tt.wantEvents; got != want {
					t.Errorf("%d events written, want %d", got, want)
				}
				if waited := time.Since(t0) > 0; waited != tt.wantWaited {
					t.Errorf("waited %s (waited out the rest = %v, want %v)", time.Since(t0), waited, tt.wantWaited)
				}
			})
		})
	}
}

// TestDropBurstsLoggedOnce: when the queue is full, events are dropped and
// counted without Observe ever blocking; each burst of drops is logged when
// it starts and when the queue has room again (with its count), never per
// event.
func TestDropBurstsLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newCounting(true)
		logs := &logRecords{}
		r := newRecorder(b, 16, slog.New(logs))
		defer func() {
			close(b.gate)
			r.Close()
		}()
		for burst := 1; burst <= 2; burst++ {
			// The writer holds one event in a write that waits for the
			// gate; 16 fill the queue; the other 84 are dropped.
			observeN(r, 1)
			if burst > 1 {
				time.Sleep(rest) // the writer's rest after the last batch
			}
			synctest.Wait()
			observeN(r, 100)
			if got, want := r.Dropped(), uint64(84*burst); got != want {
				t.Fatalf("burst %d: %d dropped, want %d", burst, got, want)
			}
			if n := len(logs.lines("events: queue full")); n != burst {
				t.Fatalf("burst %d: %d 'queue full' lines, want %d", burst, n, burst)
			}
			if n := len(logs.lines("events: queue has room")); n != burst-1 {
				t.Fatalf("burst %d: %d 'room again' lines before the queue drained, want %d", burst, n, burst-1)
			}
			// Two writes: the held event, then the 16 queued.
			b.gate <- struct{}{}
			b.gate <- struct{}{}
			synctest.Wait()
			ends := logs.lines("events: queue has room")
			if len(ends) != burst {
				t.Fatalf("burst %d: %d 'room again' lines, want %d", burst, len(ends), burst)
			}
			last := ends[len(ends)-1]
			if last["dropped"] != uint64(84) || last["dropped_total"] != uint64(84*burst) {
				t.Fatalf("burst %d: end of burst logged %v, want dropped 84, total %d", burst, last, 84*burst)
			}
		}
		if got := r.Recorded(); got != 2*17 {
			t.Fatalf("%d recorded, want %d", got, 2*17)
		}
	})
}

// TestHighRate: 5000 decisions a second for one second (5 a millisecond,
// synctest's clock) are written in about one batch per rest, none dropped,
// with the default queue and with the smallest one allowed (which the
// writer empties whenever it is half full instead of resting); a batch goes
// to the store in calls of at most eventsPerCall events.
func TestHighRate(t *testing.T) {
	tests := []struct {
		name       string
		buffer     int
		maxBatches int64
	}{
		// One batch at the start, then one per rest: 11 in one second,
		// each in calls of eventsPerCall and one for what is left.
		{"default queue", config.DefaultEventsBuffer, 5000/eventsPerCall + int64(time.Second/rest) + 2},
		// Woken at 8 queued: about one batch per 8 events.
		{"smallest queue", 16, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newCounting(false)
				r := newRecorder(b, tt.buffer, slog.New(slog.DiscardHandler))
				d := oneDecision()
				for ms := 0; ms < 1000; ms++ {
					for i := 0; i < 5; i++ {
						r.Observe(d)
					}
					time.Sleep(time.Millisecond)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				t.Logf("%d store calls for 5000 decisions in 1s (rest %s, queue %d)", b.batches.Load(), rest, tt.buffer)
				if r.Dropped() != 0 || r.Recorded() != 5000 || b.events.Load() != 5000 {
					t.Fatalf("dropped %d, recorded %d, written %d; want 0, 5000, 5000", r.Dropped(), r.Recorded(), b.events.Load())
				}
				if n := b.batches.Load(); n > tt.maxBatches {
					t.Fatalf("%d store calls, want at most %d", n, tt.maxBatches)
				}
				if l := b.largest.Load(); l > eventsPerCall {
					t.Fatalf("a store call of %d events, want at most %d", l, eventsPerCall)
				}
			})
		})
	}
}
