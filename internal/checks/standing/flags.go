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
	customer, login, ref string
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
	if !hit || f.view.Has(Key(ScopeCustomer, d.Customer)) || (d.Login != "" && f.view.Has(Key(ScopeLogin, d.Login))) {
		return
	}
	select {
	case f.ch <- flagJob{customer: d.Customer, login: d.Login, ref: d.Ref}:
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

// count records one finding: against its login, if it has one, and
// against its customer. A login is flagged at the threshold; the
// customer at the threshold when the findings come without a login
// (identified by network), else at customer_threshold (several of its
// logins at once).
func (f *Flags) count(ctx context.Context, j flagJob) {
	cfg := f.cfg.Load()
	now := f.clk.Now()
	if j.login != "" {
		n, refs, err := f.b.Count(ctx, Key(ScopeLogin, j.login), j.ref, now, cfg.Content.Window)
		if err != nil {
			f.log.Warn("standing: counting a content finding failed", "login", j.login, "ref", j.ref, "err", err)
		} else if n >= cfg.Content.Threshold {
			f.raise(ctx, cfg, j.customer, Stop{Scope: ScopeLogin, ID: j.login}, n, refs, now)
		}
	}
	n, refs, err := f.b.Count(ctx, Key(ScopeCustomer, j.customer), j.ref, now, cfg.Content.Window)
	if err != nil {
		f.log.Warn("standing: counting a content finding failed", "customer", j.customer, "ref", j.ref, "err", err)
		return
	}
	limit := cfg.Content.Threshold
	if j.login != "" {
		limit = cfg.Content.CustomerThreshold
	}
	if n >= limit {
		f.raise(ctx, cfg, j.customer, Stop{Scope: ScopeCustomer, ID: j.customer}, n, refs, now)
	}
}

// raise sets the content flag of st's scope and id, once, and tells the
// postmaster.
func (f *Flags) raise(ctx context.Context, cfg *Config, customer string, st Stop, n int, refs []string, now time.Time) {
	st.Action, st.Source, st.Who, st.When, st.Samples = Action(cfg.Content.Action), SourceContent, "aupguard", now, refs
	st.Reason = fmt.Sprintf("%d messages with malware, listed links or spam within %s", n, cfg.Content.Window)
	created, err := f.b.Put(ctx, st, true)
	if err != nil {
		f.log.Warn("standing: raising the content flag failed", "scope", st.Scope, "id", st.ID, "err", err)
		return
	}
	if !created {
		return // raised already, here or by another gateway
	}
	f.log.Warn("sender flagged for content", "event", "standing_flagged", "source", SourceContent, "customer", customer,
		"scope", st.Scope, "id", st.ID, "action", st.Action, "findings", n, "window", cfg.Content.Window.String(), "samples", strings.Join(refs, " "))
	if fn := f.notify.Load(); fn != nil {
		(*fn)(Notice{Customer: customer, Stop: st, Count: n, Window: cfg.Content.Window})
	}
}
