// Package panics accounts for the panics the gateway recovers. A panic in
// one check, one hook or one MTA connection must never end the process;
// each one that is recovered is logged once, with its stack, and counted by
// where it happened (the aupguard_panics_total{where} metric), so that a
// recovered panic is never silent.
package panics

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
)

// Places a panic is recovered, the values of the where label.
const (
	// WhereConnection is the milter library serving one MTA connection.
	WhereConnection = "milter_connection"
	// WhereHandler is the gateway's handler of one milter event.
	WhereHandler = "milter_handler"
	// WhereCheck is a check of the chain.
	WhereCheck = "check"
)

// Reporter logs and counts recovered panics. It is safe for concurrent use.
// A nil *Reporter logs to slog.Default() and counts nothing.
type Reporter struct {
	log    *slog.Logger
	mu     sync.Mutex
	counts map[string]*atomic.Uint64
}

// New returns a Reporter that logs to log.
func New(log *slog.Logger) *Reporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reporter{log: log, counts: map[string]*atomic.Uint64{}}
}

// Recovered reports the value of a recover() at where; detail is extra
// context for the log line (the stage, the check's name). It takes the
// stack itself, so call it from the deferred function that recovered.
func (r *Reporter) Recovered(where, detail string, value any) {
	r.RecoveredStack(where, detail, value, debug.Stack())
}

// RecoveredStack is Recovered with a stack taken by the caller.
func (r *Reporter) RecoveredStack(where, detail string, value any, stack []byte) {
	log := slog.Default()
	if r != nil {
		log = r.log
	}
	log.Error("panic recovered", "where", where, "detail", detail, "panic", fmt.Sprint(value), "stack", string(stack))
	// Counted once logged: whoever sees the count finds the line.
	if r != nil {
		r.counter(where).Add(1)
	}
}

func (r *Reporter) counter(where string) *atomic.Uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.counts[where]
	if !ok {
		c = new(atomic.Uint64)
		r.counts[where] = c
	}
	return c
}

// Count is the number of panics recovered at one place.
type Count struct {
	Where string
	N     uint64
}

// Counts returns the number of panics recovered so far, by place, sorted.
func (r *Reporter) Counts() []Count {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Count, 0, len(r.counts))
	for w, c := range r.counts {
		out = append(out, Count{w, c.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Where < out[j].Where })
	return out
}

// Total is the number of panics recovered so far.
func (r *Reporter) Total() uint64 {
	var n uint64
	for _, c := range r.Counts() {
		n += c.N
	}
	return n
}

// WhereHTTP is an HTTP handler (admin API, unsubscribe endpoint).
const WhereHTTP = "http"

// HTTP wraps h so that a panic while serving one request is reported here
// (net/http would recover it with a plain-text line on stderr, uncounted)
// and answered 500 when nothing was written yet. http.ErrAbortHandler, the
// sanctioned way to abort a response, is passed on untouched.
func (r *Reporter) HTTP(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			r.Recovered(WhereHTTP, name+" "+req.Method+" "+req.URL.Path, p)
			if !tw.wrote {
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(tw, req)
	})
}

// trackingWriter records whether the response was started.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the underlying writer (flushing,
// deadlines).
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
