package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/store"
)

// pendingRun is a Run added to a batch; its Result is known after Exec.
// On a Redis Cluster the reseller-wide ops of a reseller's customer are in
// the reseller's slot: they run as a second script call (side) in the
// same pipeline, still one round trip, and the two answers are merged.
type pendingRun struct {
	ops  []Op
	call *store.Call
	// side, own and res are the second call of a split run: own are the
	// indexes in ops of the first call's ops, resOps of the side's.
	side       *store.Call
	own, other []int
	// retry runs the side call again when its node lost the script.
	retry func() (any, error)
	// applied marks, for a split run refused in ModeReserve, the ops of
	// the part that allowed and so was applied (given back like any
	// reservation of a refused message or recipient).
	applied []bool
	res     Result
	err     error
	done    bool
}

// result decodes the call's reply once.
func (p *pendingRun) result() (Result, error) {
	if p.done {
		return p.res, p.err
	}
	p.done = true
	if p.side != nil {
		p.res, p.err = p.splitResult()
		return p.res, p.err
	}
	p.res, p.err = decodeCall(p.call, p.ops)
	return p.res, p.err
}

// decodeCall decodes one call's Run reply for ops.
func decodeCall(c *store.Call, ops []Op) (Result, error) {
	v, err := c.Result()
	if err != nil {
		return Result{}, err
	}
	return decodeReply(v, ops)
}

func decodeReply(v any, ops []Op) (Result, error) {
	switch x := v.(type) {
	case Result:
		return x, nil
	case []any:
		return decodeRun(x, ops)
	case *redis.Cmd:
		// A side call: the batch script's reply of one call.
		out, ok := x.Val().([]any)
		if !ok || len(out) != 1 {
			return Result{}, fmt.Errorf("%w: ratelimit: side reply %v", store.ErrUnavailable, x.Val())
		}
		return decodeReply(out[0], ops)
	}
	return Result{}, fmt.Errorf("%w: ratelimit: batch reply of type %T", store.ErrUnavailable, v)
}

// pick returns the ops at idx.
func pick(ops []Op, idx []int) []Op {
	out := make([]Op, len(idx))
	for i, j := range idx {
		out[i] = ops[j]
	}
	return out
}

// splitResult merges the answers of a split run: allowed when both parts
// allowed; the binding op is the one with the longest wait.
func (p *pendingRun) splitResult() (Result, error) {
	a, err := decodeCall(p.call, pick(p.ops, p.own))
	if err != nil {
		return Result{}, err
	}
	v, err := p.side.Result()
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") && p.retry != nil {
		// The reseller's node lost its scripts (restart, SCRIPT FLUSH):
		// EVAL loads it there again; rare, so a second round trip.
		v, err = p.retry()
	}
	if err != nil {
		return Result{}, err
	}
	b, err := decodeReply(v, pick(p.ops, p.other))
	if err != nil {
		return Result{}, err
	}
	res := Result{Allowed: a.Allowed && b.Allowed, Binding: -1, Now: a.Now, Ops: make([]OpResult, len(p.ops))}
	for i, j := range p.own {
		res.Ops[j] = a.Ops[i]
	}
	for i, j := range p.other {
		res.Ops[j] = b.Ops[i]
	}
	for _, part := range []struct {
		r   Result
		idx []int
	}{{a, p.own}, {b, p.other}} {
		if !part.r.Allowed && part.r.Binding >= 0 && (res.Binding < 0 || part.r.Retry > res.Retry) {
			res.Binding, res.Retry = part.idx[part.r.Binding], part.r.Retry
		}
	}
	if !res.Allowed {
		p.applied = make([]bool, len(p.ops))
		for _, part := range []struct {
			r   Result
			idx []int
		}{{a, p.own}, {b, p.other}} {
			for _, j := range part.idx {
				p.applied[j] = part.r.Allowed
			}
		}
	}
	return res, nil
}

// kept returns the reservations a Run made, with their buckets (nil when
// nothing was written): every op when it allowed (or in ModeForce); for
// a split run refused, the part that allowed, which wrote its counters.
func (p *pendingRun) kept(m Mode, r Result) []Op {
	switch {
	case m == ModeCheck || m == ModeUsage:
		return nil
	case r.Allowed || m == ModeForce:
		return reserved(p.ops, r)
	case p.applied == nil:
		return nil
	}
	var out []Op
	for i, op := range p.ops {
		if p.applied[i] && op.Kind != KindSpike {
			op.Bucket = r.Ops[i].Bucket
			out = append(out, op)
		}
	}
	return out
}

// queueRun adds a Run of ops to batch sb: a proc call of the batch script
// on Redis (lua/run.lua, the same Lua as a direct Run), the backend's Run
// on memory.
func queueRun(sb *store.Batch, b Backend, customer string, mode Mode, ops []Op) *pendingRun {
	return b.queueRun(sb, customer, mode, ops)
}

func (m *memory) queueRun(sb *store.Batch, customer string, mode Mode, ops []Op) *pendingRun {
	p := &pendingRun{ops: ops}
	p.call = sb.Func(func(ctx context.Context) (any, error) { return m.Run(ctx, customer, mode, ops) })
	return p
}

// slots splits ops by Cluster slot: the customer's (its logins' too) and
// its reseller's; split is false when one script call may run them all
// (not a Cluster, or only one part).
func slots(sb *store.Batch, ops []Op) (own, other []int, split bool) {
	for i, op := range ops {
		if op.Scope == ScopeReseller {
			other = append(other, i)
		} else {
			own = append(own, i)
		}
	}
	return own, other, sb.Cluster() && len(own) > 0 && len(other) > 0
}

// sideCall adds the batch script with one call of proc as a plain command
// of the pipeline (another Cluster slot than the batch's procs).
func sideCall(sb *store.Batch, script *redis.Script, proc *store.Proc, keys []string, args []any) (*store.Call, []any) {
	argv := make([]any, 0, 4+len(args))
	argv = append(argv, 1, proc.Name(), len(keys), len(args))
	argv = append(argv, args...)
	cmd := make([]any, 0, 3+len(keys)+len(argv))
	cmd = append(cmd, "evalsha", script.Hash(), len(keys))
	for _, k := range keys {
		cmd = append(cmd, k)
	}
	cmd = append(cmd, argv...)
	return sb.Side(redis.NewCmd(context.Background(), cmd...)), argv
}

// queueRun adds a Run of ops to sb on Redis (split on a Cluster).
func (r *redisBackend) queueRun(sb *store.Batch, customer string, mode Mode, ops []Op) *pendingRun {
	p := &pendingRun{ops: ops}
	head := func() []any { return []any{string(mode), r.nowArg()} }
	own, other, split := slots(sb, ops)
	if !split {
		keys, args := r.encode(customer, ops, false, head())
		p.call = sb.Proc(r.run, keys, args...)
		return p
	}
	p.own, p.other = own, other
	keys, args := r.encode(customer, pick(ops, own), false, head())
	p.call = sb.Proc(r.run, keys, args...)
	rkeys, rargs := r.encode(customer, pick(ops, other), false, head())
	var argv []any
	script := r.h.BatchScript()
	p.side, argv = sideCall(sb, script, r.run, rkeys, rargs)
	p.retry = func() (any, error) {
		ctx, cancel := r.h.Context(context.Background())
		defer cancel()
		v, err := script.Run(ctx, r.h.Client, rkeys, argv...).Result()
		if err != nil {
			return nil, store.Unavailable(err)
		}
		out, ok := v.([]any)
		if !ok || len(out) != 1 {
			return nil, fmt.Errorf("%w: ratelimit: reply %v", store.ErrUnavailable, v)
		}
		return out[0], nil
	}
	return p
}

// queueRelease adds the release of ops to sb on Redis (split on a
// Cluster).
func (r *redisBackend) queueRelease(sb *store.Batch, customer string, ops []Op) []*store.Call {
	own, other, split := slots(sb, ops)
	if !split {
		keys, args := r.encode(customer, ops, true, []any{r.nowArg()})
		return []*store.Call{sb.Proc(r.release, keys, args...)}
	}
	keys, args := r.encode(customer, pick(ops, own), true, []any{r.nowArg()})
	c := sb.Proc(r.release, keys, args...)
	rkeys, rargs := r.encode(customer, pick(ops, other), true, []any{r.nowArg()})
	side, _ := sideCall(sb, r.h.BatchScript(), r.release, rkeys, rargs)
	return []*store.Call{c, side}
}

// queueRelease adds a Release of ops to batch sb: one call, or two on a
// Redis Cluster when reseller-wide ops are given back too.
func queueRelease(sb *store.Batch, b Backend, customer string, ops []Op) []*store.Call {
	return b.queueRelease(sb, customer, ops)
}

func (m *memory) queueRelease(sb *store.Batch, customer string, ops []Op) []*store.Call {
	return []*store.Call{sb.Func(func(ctx context.Context) (any, error) { return nil, m.Release(ctx, customer, ops) })}
}

// batchOf returns the stage's batch, or a batch of the check's own that
// the caller runs at once (own is true) when there is none: a chain
// without batches, or a check called directly, still makes one round
// trip.
func (c *Checks) batchOf(b *store.Batch) (sb *store.Batch, own bool) {
	if b != nil {
		return b, false
	}
	return c.b.newBatch(), true
}

func (r *redisBackend) newBatch() *store.Batch { return r.h.NewBatch() }

// newBatch returns a memory batch (of functions).
func (m *memory) newBatch() *store.Batch {
	var none *store.Handle
	return none.NewBatch()
}

// decodeRun turns run.lua's reply into a Result.
func decodeRun(v []any, ops []Op) (Result, error) {
	if len(v) != 4+4*len(ops) {
		return Result{}, errors.New("ratelimit: script returned " + itoa(len(v)) + " values for " + itoa(len(ops)) + " ops")
	}
	res := Result{Allowed: num(v[0]) == 1, Binding: int(num(v[1])) - 1, Retry: msDur(num(v[2])), Now: unixMilli(num(v[3])), Ops: make([]OpResult, len(ops))}
	for i, op := range ops {
		f := v[4+4*i : 8+4*i]
		if op.Kind == KindSpike {
			res.Ops[i] = OpResult{Flagged: num(f[0]) == 1, Count: num(f[1]), Threshold: flt(f[2]), Baseline: flt(f[3])}
			continue
		}
		res.Ops[i] = OpResult{Used: num(f[0]), Reset: msDur(num(f[1])), Next: msDur(num(f[2])), Bucket: num(f[3])}
	}
	return res, nil
}
