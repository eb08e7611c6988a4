// Package audit is the trail of changes made by people: through the admin
// API, the console or the CLI (directory changes, suspensions, opt-out
// removals, flag clears, token changes). Each entry says who (the token's
// name, or "cli:<unix user>"), when, what changed (a short before/after
// summary) and from where (the client address, or "cli"). The trail is
// kept in the store (both backends) for audit.retention.
//
// Whoever makes a change calls a Recorder: the admin server records every
// successful write it serves (so a route added later is audited by
// construction) and a handler may describe its change better with
// Describe; a CLI command or a family that changes state outside the
// admin server calls Record itself.
package audit

import (
	"context"
	"sync"
	"time"
)

// Entry is one change.
type Entry struct {
	Time time.Time `json:"time"`
	// Who made it: a token's name ("admin" for the admin token), or
	// "cli:<unix user>".
	Who string `json:"who"`
	// From is the client's address, or "cli".
	From string `json:"from"`
	// Action names the change, e.g. "customer.set", "token.create",
	// "optout.remove", "flag.clear", "suspend", or "METHOD /route".
	Action string `json:"action"`
	// Target is what was changed (a customer id, a token's name...).
	Target string `json:"target,omitempty"`
	// Before and After summarise the change (short; never a secret).
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// Recorder records changes.
type Recorder interface {
	Record(ctx context.Context, e Entry) error
}

// Actor is who acts in a context, filled into entries recorded without.
type Actor struct {
	Who, From string
}

type actorKey struct{}

// WithActor returns ctx whose changes are recorded as a's.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorOf returns the actor of ctx (zero when none).
func ActorOf(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}

// Record records e through r, filling Who and From from ctx's actor when
// empty: the one-line hook for a change (r may be nil: nothing recorded).
func Record(ctx context.Context, r Recorder, e Entry) error {
	if r == nil {
		return nil
	}
	a := ActorOf(ctx)
	if e.Who == "" {
		e.Who = a.Who
	}
	if e.From == "" {
		e.From = a.From
	}
	return r.Record(ctx, e)
}

// Pending is the description of the change a request is making, which
// the admin server records when the request succeeds.
type Pending struct {
	mu    sync.Mutex
	entry Entry
	set   bool
}

type pendingKey struct{}

// WithPending returns ctx carrying p (the admin server does this for
// every write).
func WithPending(ctx context.Context, p *Pending) context.Context {
	return context.WithValue(ctx, pendingKey{}, p)
}

// Describe says what the request in ctx changes: action, target and a
// before/after summary. Outside a request that records (no Pending), it
// does nothing. A second call replaces the first.
func Describe(ctx context.Context, action, target, before, after string) {
	p, ok := ctx.Value(pendingKey{}).(*Pending)
	if !ok {
		return
	}
	p.mu.Lock()
	p.entry = Entry{Action: action, Target: target, Before: before, After: after}
	p.set = true
	p.mu.Unlock()
}

// Entry returns the described change (false: the handler said nothing).
func (p *Pending) Entry() (Entry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.entry, p.set
}

// Clip bounds a summary (the store keeps entries short).
func Clip(s string) string {
	const max = 512
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
