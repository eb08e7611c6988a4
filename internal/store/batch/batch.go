package batch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/clock"
)

// Runner is where batches run: a Redis client and the families' Lua
// registered on it, or nothing (the memory backend: batches of Go
// functions). One Runner belongs to one store handle.
type Runner struct {
	client  redis.UniversalClient
	timeout time.Duration

	mu   sync.Mutex
	fams map[string]*Lua
	snap atomic.Pointer[snapshot]
}

// snapshot is the batch script of the families registered so far, and
// the procs it holds.
type snapshot struct {
	script *redis.Script
	procs  map[*Proc]bool
}

// NewRunner returns a runner on client (nil: memory), each Exec bounded by
// timeout.
func NewRunner(client redis.UniversalClient, timeout time.Duration) *Runner {
	return &Runner{client: client, timeout: timeout}
}

// Register adds a family's Lua (ReadLua of fsys) to the batch script and
// returns it; the family keeps its procs and scripts from it. A family
// registers at setup, before its first batch; registering the same files
// again (a reload) returns the set registered first, and a family's name
// with other files is an error. A registration after batches ran makes a
// new script (a new SHA, loaded by EVALSHA's NOSCRIPT fallback).
func (r *Runner) Register(family string, l *Lua) (*Lua, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.fams[family]; ok {
		if !old.same(l) {
			return nil, fmt.Errorf("batch: family %s registered twice with other Lua", family)
		}
		return old, nil
	}
	if l.family != family {
		return nil, fmt.Errorf("batch: Lua of family %s registered as %s", l.family, family)
	}
	if r.fams == nil {
		r.fams = map[string]*Lua{}
	}
	r.fams[family] = l
	r.snap.Store(nil) // made again at the next Exec
	return l, nil
}

// Script returns the current batch script (for LoadScripts at start).
func (r *Runner) Script() *redis.Script { return r.snapshot().script }

func (r *Runner) snapshot() *snapshot {
	if s := r.snap.Load(); s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.snap.Load(); s != nil {
		return s
	}
	names := make([]string, 0, len(r.fams))
	for n := range r.fams {
		names = append(names, n)
	}
	sort.Strings(names)
	fams := make([]*Lua, len(names))
	s := &snapshot{procs: map[*Proc]bool{}}
	for i, n := range names {
		fams[i] = r.fams[n]
		for _, p := range fams[i].procs {
			s.procs[p] = true
		}
	}
	s.script = redis.NewScript(writeScript(fams))
	r.snap.Store(s)
	return s
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
// function returned) and its error (wrapped as ErrUnavailable for a store
// failure). Before Exec it reports an error.
func (c *Call) Result() (any, error) {
	if !c.done {
		return nil, errors.New("store: batch call read before Exec")
	}
	return c.val, c.err
}

// Batch is the store work of one stage of one transaction: every check
// that needs the store at that stage adds its calls, then Exec runs them
// all in one round trip (Redis: one EVALSHA of the batch script, plus the
// Side reads outside the customer's slot in the same pipeline). The checks
// do not know of each other: each adds its own calls and reads its own
// results. On the memory backend the calls are Go functions run in order.
type Batch struct {
	r     *Runner
	calls []*Call
	ran   bool
}

// NewBatch starts an empty batch (a nil Runner: a memory batch).
func (r *Runner) NewBatch() *Batch { return &Batch{r: r} }

// Redis reports whether the batch runs on Redis (calls are procs) or on the
// memory backend (calls are functions).
func (b *Batch) Redis() bool { return b != nil && b.r != nil && b.r.client != nil }

// Cluster reports whether the store is a Redis Cluster, where keys outside
// the customer's slot cannot be in the script.
func (b *Batch) Cluster() bool {
	if !b.Redis() {
		return false
	}
	_, ok := b.r.client.(*redis.ClusterClient)
	return ok
}

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
		b.fail(append(procCalls, sides...), err)
		b.notify()
		return err
	}
	if err := b.execRedis(ctx, procCalls, sides); err != nil {
		errs = append(errs, err)
	}
	b.notify()
	return errors.Join(errs...)
}

func (b *Batch) fail(calls []*Call, err error) {
	for _, c := range calls {
		c.err, c.done = err, true
	}
}

func (b *Batch) notify() {
	for _, c := range b.calls {
		if c.then != nil && c.done {
			c.then(c.val, c.err)
		}
	}
}

func (b *Batch) execRedis(ctx context.Context, calls, sides []*Call) error {
	ctx, cancel := clock.WithTimeout(ctx, b.r.timeout)
	defer cancel()
	snap := b.r.snapshot()
	for _, c := range calls {
		if !snap.procs[c.proc] {
			// A programming error (a family that did not register its
			// Lua on this store) found by any test: nothing runs.
			err := fmt.Errorf("store: proc %s is not registered on this store", c.proc.Name())
			b.fail(calls, err)
			b.fail(sides, err)
			return err
		}
	}
	s := snap.script
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
		script = s.Run(ctx, b.r.client, keys, args...)
		err = script.Err()
	} else {
		// Pipelined's error is the first failed command's: each command's
		// own error is read below.
		_, _ = b.r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
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
			script = s.Run(ctx, b.r.client, keys, args...)
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
		b.fail(calls, err)
		return err
	}
	out, _ := script.Val().([]any)
	if len(out) != len(calls) {
		err := fmt.Errorf("%w: batch script replied %d values for %d calls", ErrUnavailable, len(out), len(calls))
		b.fail(calls, err)
		return err
	}
	for i, c := range calls {
		c.val, c.done = out[i], true
	}
	return sideErr
}
