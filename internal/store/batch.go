package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Proc is one kind of store work that a check contributes to a stage's
// batch: on Redis, a Lua function that becomes part of the one script every
// batch runs (see Batch). Register procs at package init with NewProc; the
// script is put together on first use, so that every package's procs are in
// it and its SHA is the same on every gateway of the same version.
type Proc struct {
	name string
	lua  string
	arg  any // name as a script argument, boxed once
}

// Name returns the proc's registered name.
func (p *Proc) Name() string { return p.name }

var procs struct {
	mu     sync.Mutex
	byName map[string]*Proc
	script *redis.Script
}

// NewProc registers a proc. body is the body of a Lua function of (KEYS,
// ARGV), the proc's own slices of the script's keys and arguments; it may
// call store_now() for the server's time in ms (one TIME per batch); it must
// return a value Redis can reply with (a table, a number or a string, never
// nil). All keys of one batch must hash to one Cluster slot (a customer's
// hash tag); a read outside it goes beside the script (Batch.Side). It
// panics on a duplicate name or after the script was built: both are
// programming errors found by any test.
func NewProc(name, body string) *Proc {
	procs.mu.Lock()
	defer procs.mu.Unlock()
	if procs.script != nil {
		panic("store: NewProc(" + name + ") after the batch script was built")
	}
	if procs.byName == nil {
		procs.byName = map[string]*Proc{}
	}
	if _, dup := procs.byName[name]; dup {
		panic("store: duplicate proc " + name)
	}
	p := &Proc{name: name, lua: body, arg: name}
	procs.byName[name] = p
	return p
}

// BatchScript returns the one Lua script that runs every batch: the
// registered procs as functions, then a dispatcher. ARGV[1] is the number
// of calls n; ARGV[2..1+3n] are, per call, the proc's name and the number
// of its keys and of its arguments; the calls' arguments follow, and KEYS
// are the calls' keys in order. It replies with one value per call.
func BatchScript() *redis.Script {
	procs.mu.Lock()
	defer procs.mu.Unlock()
	if procs.script != nil {
		return procs.script
	}
	names := make([]string, 0, len(procs.byName))
	for n := range procs.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(`-- aupguard: one stage's store work in one script (store/batch.go)
local P = {}
-- store_now is the server's time in ms, read once per batch (TIME).
local batch_now
local function store_now()
  if batch_now == nil then
    local t = redis.call('TIME')
    batch_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return batch_now
end
`)
	for _, n := range names {
		fmt.Fprintf(&b, "P[%q] = function(KEYS, ARGV)\n%s\nend\n", n, procs.byName[n].lua)
	}
	b.WriteString(`local n = tonumber(ARGV[1])
local ki, ai = 0, 1 + 3 * n
local out = {}
for i = 1, n do
  local h = 1 + (i - 1) * 3
  local f = P[ARGV[h + 1]]
  local nk, na = tonumber(ARGV[h + 2]), tonumber(ARGV[h + 3])
  local k, a = {}, {}
  for j = 1, nk do k[j] = KEYS[ki + j] end
  for j = 1, na do a[j] = ARGV[ai + j] end
  ki, ai = ki + nk, ai + na
  out[i] = f(k, a)
end
return out
`)
	procs.script = redis.NewScript(b.String())
	return procs.script
}

// Call is one check's part of a batch. Its result is known after the
// batch's Exec.
type Call struct {
	proc *Proc
	keys []string
	args []any
	side redis.Cmder
	fn   func(ctx context.Context) (any, error)
	val  any
	err  error
	done bool
	then func(any, error)
}

// Then sets a function Exec calls with the call's result once it is known
// (a check that does not read its result later, e.g. to log a failure).
func (c *Call) Then(fn func(any, error)) *Call {
	c.then = fn
	return c
}

// Result returns the call's reply (Redis: the proc's return value as
// go-redis decodes it, or the command of a Side call; memory: what the
// function returned) and its error
// (wrapped as ErrUnavailable for a store failure). Before Exec it reports
// an error.
func (c *Call) Result() (any, error) {
	if !c.done {
		return nil, errors.New("store: batch call read before Exec")
	}
	return c.val, c.err
}

// Batch is the store work of one stage of one transaction: every check
// that needs the store at that stage adds its calls, then Exec runs them
// all in one round trip (Redis: one EVALSHA of BatchScript, plus the Side
// reads outside the customer's slot in the same pipeline). The checks do
// not know of each other: each adds its own calls and reads its own
// results. On the memory backend the calls are Go functions run in order.
type Batch struct {
	h     *Handle
	calls []*Call
	ran   bool
}

// NewBatch starts an empty batch on the store.
func (h *Handle) NewBatch() *Batch { return &Batch{h: h} }

// Redis reports whether the batch runs on Redis (calls are procs) or on the
// memory backend (calls are functions).
func (b *Batch) Redis() bool { return b != nil && b.h != nil && b.h.Client != nil }

// Cluster reports whether the store is a Redis Cluster, where keys outside
// the customer's slot cannot be in the script.
func (b *Batch) Cluster() bool {
	if !b.Redis() {
		return false
	}
	_, ok := b.h.Client.(*redis.ClusterClient)
	return ok
}

// Handle returns the store the batch runs on.
func (b *Batch) Handle() *Handle { return b.h }

// Len is the number of calls added.
func (b *Batch) Len() int { return len(b.calls) }

// Proc adds a call of p with its keys and arguments (Redis only).
func (b *Batch) Proc(p *Proc, keys []string, args ...any) *Call {
	c := &Call{proc: p, keys: keys, args: args}
	b.calls = append(b.calls, c)
	return c
}

// Side adds a plain command that must run outside the script (a key in
// another Cluster slot); it is sent in the same pipeline (Redis only).
func (b *Batch) Side(cmd redis.Cmder) *Call {
	c := &Call{side: cmd}
	b.calls = append(b.calls, c)
	return c
}

// Func adds a function call (the memory backend).
func (b *Batch) Func(fn func(ctx context.Context) (any, error)) *Call {
	c := &Call{fn: fn}
	b.calls = append(b.calls, c)
	return c
}

// Exec runs the batch once; a second Exec does nothing. A store failure is
// returned and is also every Redis call's error (each check decides what
// its failure means).
func (b *Batch) Exec(ctx context.Context) error {
	if b == nil || b.ran {
		return nil
	}
	b.ran = true
	if len(b.calls) == 0 {
		return nil
	}
	var errs []error
	var procCalls []*Call
	var sides []*Call
	for _, c := range b.calls {
		switch {
		case c.fn != nil:
			c.val, c.err = c.fn(ctx)
			c.done = true
			if c.err != nil {
				errs = append(errs, c.err)
			}
		case c.side != nil:
			sides = append(sides, c)
		default:
			procCalls = append(procCalls, c)
		}
	}
	if len(procCalls) == 0 && len(sides) == 0 {
		b.notify()
		return errors.Join(errs...)
	}
	if !b.Redis() {
		err := errors.New("store: Redis batch call on a memory store")
		for _, c := range append(procCalls, sides...) {
			c.err, c.done = err, true
		}
		b.notify()
		return err
	}
	if err := b.execRedis(ctx, procCalls, sides); err != nil {
		errs = append(errs, err)
	}
	b.notify()
	return errors.Join(errs...)
}

func (b *Batch) notify() {
	for _, c := range b.calls {
		if c.then != nil && c.done {
			c.then(c.val, c.err)
		}
	}
}

func (b *Batch) execRedis(ctx context.Context, calls, sides []*Call) error {
	ctx, cancel := b.h.Context(ctx)
	defer cancel()
	s := BatchScript()
	var keys []string
	var args []any
	if len(calls) > 0 {
		nargs := 1 + 3*len(calls)
		for _, c := range calls {
			nargs += len(c.args)
		}
		nkeys := 0
		for _, c := range calls {
			nkeys += len(c.keys)
		}
		keys = make([]string, 0, nkeys)
		args = make([]any, 0, nargs)
		args = append(args, len(calls))
		for _, c := range calls {
			keys = append(keys, c.keys...)
			// Small ints go into an interface without an allocation.
			args = append(args, c.proc.arg, len(c.keys), len(c.args))
		}
		for _, c := range calls {
			args = append(args, c.args...)
		}
	}
	var script *redis.Cmd
	var err, sideErr error
	if len(sides) == 0 {
		script = s.Run(ctx, b.h.Client, keys, args...)
		err = script.Err()
	} else {
		// Pipelined's error is the first failed command's: each command's
		// own error is read below.
		_, _ = b.h.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			if len(calls) > 0 {
				script = s.EvalSha(ctx, p, keys, args...)
			}
			for _, c := range sides {
				_ = p.Process(ctx, c.side)
			}
			return nil
		})
		if script != nil && redis.HasErrorPrefix(script.Err(), "NOSCRIPT") {
			// The server lost its scripts (restart, SCRIPT FLUSH): EVAL
			// loads it again; the side reads already answered.
			script = s.Run(ctx, b.h.Client, keys, args...)
		}
		if script != nil {
			err = script.Err()
		}
		for _, c := range sides {
			c.done = true
			c.val, c.err = c.side, Unavailable(c.side.Err())
			if errors.Is(c.err, redis.Nil) {
				c.err = nil // "no value" is an answer (e.g. SET NX GET that set)
			}
			// A side command's failure is its own call's: the script's
			// calls keep their answers (a side in another Cluster slot
			// may fail alone, e.g. NOSCRIPT on its node).
			if c.err != nil && sideErr == nil {
				sideErr = c.err
			}
		}
	}
	if script == nil {
		return Unavailable(sideErr)
	}
	if err != nil {
		err = Unavailable(err)
		for _, c := range calls {
			c.err, c.done = err, true
		}
		return err
	}
	out, _ := script.Val().([]any)
	if len(out) != len(calls) {
		err := fmt.Errorf("%w: batch script replied %d values for %d calls", ErrUnavailable, len(out), len(calls))
		for _, c := range calls {
			c.err, c.done = err, true
		}
		return err
	}
	for i, c := range calls {
		c.val, c.done = out[i], true
	}
	return sideErr
}
