package standing

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aupguard/aupguard/internal/checks/content"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/decision"
	"github.com/aupguard/aupguard/internal/engine/policy"
)

// Notice is what the postmaster is told when a flag is raised.
type Notice struct {
	Customer string
	Stop     Stop
	// Count and Window are the findings that raised it.
	Count  int
	Window time.Duration
}

// Flags raises the content flag: a decision observer that counts the
// content findings at hold or above (malware_found, listed_url,
// spam_score_hold, spam_score_reject) per customer in standing.content's
// window, and at its threshold sets a stop with source content (action
// standing.content.action) and tells the postmaster once. Observe never
// blocks: it queues, and Run does the store work.
type Flags struct {
	b    Backend
	view *View
	clk  clock.Clock
	log  *slog.Logger
	cfg  atomic.Pointer[Config]
	// notify, when set, tells the postmaster (notifications:).
	notify atomic.Pointer[func(Notice)]

	ch      chan flagJob
	dropped atomic.Uint64
	// done counts the jobs handled (tests wait on it).
	done atomic.Uint64
}

type flagJob struct {
	customer, ref string
}

// flagQueue bounds the findings waiting to be counted.
const flagQueue = 1024

// NewFlags makes the content flag on b; view is the gateway's copy of the
// stops (a sender already stopped is not counted again).
func NewFlags(b Backend, view *View, cfg *Config, clk clock.Clock, log *slog.Logger) *Flags {
	if clk == nil {
		clk = clock.System{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Flags{b: b, view: view, clk: clk, log: log, ch: make(chan flagJob, flagQueue)}
	f.cfg.Store(cfg)
	return f
}

// SetConfig installs the settings of a reloaded config.
func (f *Flags) SetConfig(c *Config) { f.cfg.Store(c) }

// SetNotify sets how the postmaster is told of a raised flag.
func (f *Flags) SetNotify(fn func(Notice)) { f.notify.Store(&fn) }

// Dropped is the number of findings not counted because the queue was
// full.
func (f *Flags) Dropped() uint64 { return f.dropped.Load() }

// contentFinding reports whether a result counts towards the flag.
func contentFinding(r policy.Result) bool {
	if r.Action < policy.Quarantine || r.Finding.Name == policy.FindingError {
		return false
	}
	switch r.Check {
	case content.MalwareCheck:
		return r.Finding.Name == content.FindingMalware
	case content.ListedCheck, content.SpamCheck:
		return true
	}
	return false
}

// Observe implements decision.Observer.
func (f *Flags) Observe(d *decision.Decision) {
	if d.Customer == "" || d.Stage != decision.StageEOM || !f.cfg.Load().Content.On() {
		return
	}
	hit := false
	for _, r := range d.Results {
		if contentFinding(r) {
			hit = true
			break
		}
	}
	if !hit || f.view.Has(Key(ScopeCustomer, d.Customer)) {
		return
	}
	select {
	case f.ch <- flagJob{customer: d.Customer, ref: d.Ref}:
	default:
		f.dropped.Add(1)
	}
}

// Run counts the queued findings until ctx ends.
func (f *Flags) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-f.ch:
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			f.count(jctx, j)
			cancel()
			f.done.Add(1)
		}
	}
}

// count records one finding and raises the flag at the threshold.
func (f *Flags) count(ctx context.Context, j flagJob) {
	cfg := f.cfg.Load()
	now := f.clk.Now()
	key := Key(ScopeCustomer, j.customer)
	n, refs, err := f.b.Count(ctx, key, j.ref, now, cfg.Content.Window)
	if err != nil {
		f.log.Warn("standing: counting a content finding failed", "customer", j.customer, "ref", j.ref, "err", err)
		return
	}
	if n < cfg.Content.Threshold {
		return
	}
	st := Stop{
		Scope: ScopeCustomer, ID: j.customer, Action: Action(cfg.Content.Action),
		Reason: fmt.Sprintf("%d messages with malware, listed links or spam within %s", n, cfg.Content.Window),
		Source: SourceContent, Who: "aupguard", When: now, Samples: refs,
	}
	created, err := f.b.Put(ctx, st, true)
	if err != nil {
		f.log.Warn("standing: raising the content flag failed", "customer", j.customer, "err", err)
		return
	}
	if !created {
		return // raised already, here or by another gateway
	}
	f.log.Warn("customer flagged for content", "event", "standing_flagged", "source", SourceContent, "customer", j.customer,
		"action", st.Action, "findings", n, "window", cfg.Content.Window.String(), "samples", strings.Join(refs, " "))
	if fn := f.notify.Load(); fn != nil {
		(*fn)(Notice{Customer: j.customer, Stop: st, Count: n, Window: cfg.Content.Window})
	}
}
