package ratelimit

import (
	"context"
	"time"

	"github.com/aupguard/aupguard/internal/store"
)

// Kind is the algorithm of one counter.
type Kind string

// The counter algorithms.
const (
	// KindRate is a smooth rate (GCRA, the virtual-scheduling form of the
	// leaky bucket, ITU-T I.371): Limit units per Period, a burst of Limit
	// allowed, then one unit every Period/Limit. Exact.
	KindRate Kind = "rate"
	// KindWindow is a quota over a sliding window of Period, counted in
	// buckets of Period/WindowBuckets. Every bucket that overlaps the window
	// is counted in full: the count errs upwards only, by at most the
	// oldest bucket's count, so a quota is never exceeded in any window of
	// length Period, and refusal ends at most one bucket (10 minutes for a
	// day) later than an exact window would say.
	KindWindow Kind = "window"
	// KindRecipient is a sliding window of the send times to one
	// recipient, kept in slots of a minute (ten minutes once an hour old):
	// it errs upwards only, by at most one slot (recipient.go).
	KindRecipient Kind = "recipient"
	// KindSpike counts the message in the spike detector and reports
	// whether the short window is a spike; it never refuses by itself.
	KindSpike Kind = "spike"
)

// WindowBuckets is the number of buckets of a KindWindow counter.
const WindowBuckets = 144

// Mode is how Run treats the ops.
type Mode string

// The modes of Run.
const (
	// ModeCheck evaluates and writes nothing (the early look at MAIL FROM).
	ModeCheck Mode = "check"
	// ModeReserve applies every op when all allow, nothing otherwise.
	ModeReserve Mode = "reserve"
	// ModeForce applies every op even when one refuses (monitor mode:
	// the mail goes, so it counts).
	ModeForce Mode = "force"
	// ModeUsage evaluates one unit and reports use (the quota report).
	ModeUsage Mode = "usage"
)

// Op is one counter operation of a stage. Ops of one Run are applied
// atomically together: all or none.
type Op struct {
	Kind Kind
	// Name is the limit's name (messages_per_minute...), used in findings.
	Name string
	// Key names the counter within the customer's keys.
	Key    string
	Limit  int64
	Period time.Duration
	// N is the amount (messages, recipients, bytes).
	N int64
	// Keep is the longest window kept for a KindRecipient recipient.
	Keep time.Duration
	// Bucket is, for release, the KindWindow bucket the reservation went
	// to, or the time (ms) of a KindRecipient reservation.
	Bucket int64
	// Spike parameters.
	Spike SpikeParams
	// Scope is whose counter this is: the customer's (""), one of its
	// logins' (ScopeLogin: Key carries the login's key, the counter is
	// among the customer's) or its reseller's (ScopeReseller: the counter
	// is the reseller's, shared by all its customers). Owner is the login
	// or the reseller id, for findings and reports.
	Scope string
	Owner string
}

// The scopes of an op (Op.Scope).
const (
	ScopeLogin    = "login"
	ScopeReseller = "reseller"
)

// SpikeParams are the thresholds of a KindSpike op (the method is in
// doc.go, "Spike detection").
type SpikeParams struct {
	Factor   float64
	Floor    int64
	Baseline int64
	Alpha    float64
}

// OpResult is what Run found for one op.
type OpResult struct {
	// Used is the current use (rate: units in the bucket; window: sum;
	// recipient: sends in the window).
	Used int64
	// Reset is how long until all current use has freed.
	Reset time.Duration
	// Next is how long until one more unit is allowed (0: now).
	Next time.Duration
	// Bucket is the KindWindow bucket a reservation went to, or the time
	// (ms) of a KindRecipient reservation.
	Bucket int64
	// Spike results.
	Flagged   bool
	Count     int64
	Threshold float64
	Baseline  float64
}

// Result is the outcome of one Run.
type Result struct {
	// Allowed is false when some op refused.
	Allowed bool
	// Binding is the index of the refusing op with the longest wait
	// (the first on a tie), -1 when allowed.
	Binding int
	// Retry is how long until the binding op would allow.
	Retry time.Duration
	// Now is the store's time (Redis TIME, or the memory backend's clock).
	Now time.Time
	Ops []OpResult
}

// Backend keeps the counters. Each call is one atomic step for one
// customer: on Redis, one script in one round trip.
type Backend interface {
	Run(ctx context.Context, customer string, mode Mode, ops []Op) (Result, error)
	// Release gives back reservations made by Run (Kind, Key, Limit,
	// Period, N and Bucket as reserved).
	Release(ctx context.Context, customer string, ops []Op) error
	// queueRun adds a Run to a stage's batch and queueRelease a Release
	// (two calls on a Cluster when reseller-wide ops are given back too):
	// on Redis calls of the family's procs, on memory a function; the
	// result is read after the batch's Exec.
	queueRun(sb *store.Batch, customer string, mode Mode, ops []Op) *pendingRun
	queueRelease(sb *store.Batch, customer string, ops []Op) []*store.Call
	// newBatch starts a batch of the backend's own (a check called
	// without the chain's).
	newBatch() *store.Batch
}

// Open returns the counter backend of a store handle: one per handle
// (store.Handle.Shared), so the milter checks, the admin API and the
// commands of one process see the same counters.
func Open(ctx context.Context, h *store.Handle) (Backend, error) {
	return store.SharedOf(h, "ratelimit", func() (Backend, error) {
		if h.Backend == store.Redis {
			r, err := newRedis(h)
			if err != nil {
				return nil, err
			}
			// A failure here is not fatal: Script.Run reloads on NOSCRIPT,
			// and an outage at start is an outage like any other.
			_ = h.LoadScripts(ctx, h.BatchScript())
			return r, nil
		}
		m, err := newMemory(h.Clock, h.Path)
		if err != nil {
			return nil, err
		}
		if m.file != "" {
			m.startSnapshots(h.Logger)
		}
		return m, nil
	})
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

func bucketMs(period time.Duration) int64 {
	b := ms(period) / WindowBuckets
	if b < 1 {
		b = 1
	}
	return b
}
