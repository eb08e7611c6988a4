package ratelimit

import (
	"context"
	"errors"
	"fmt"

	"github.com/aupguard/aupguard/internal/store"
)

// pendingRun is a Run added to a batch; its Result is known after Exec.
type pendingRun struct {
	ops  []Op
	call *store.Call
	res  Result
	err  error
	done bool
}

// result decodes the call's reply once.
func (p *pendingRun) result() (Result, error) {
	if p.done {
		return p.res, p.err
	}
	p.done = true
	v, err := p.call.Result()
	if err != nil {
		p.err = err
		return p.res, err
	}
	switch x := v.(type) {
	case Result:
		p.res = x
	case []any:
		p.res, p.err = decodeRun(x, p.ops)
	default:
		p.err = fmt.Errorf("%w: ratelimit: batch reply of type %T", store.ErrUnavailable, v)
	}
	return p.res, p.err
}

// queueRun adds a Run of ops to batch sb: a proc call of the batch script
// on Redis (lua/run.lua, the same Lua as a direct Run), the backend's Run
// on memory.
func queueRun(sb *store.Batch, b Backend, customer string, mode Mode, ops []Op) *pendingRun {
	return &pendingRun{ops: ops, call: b.queueRun(sb, customer, mode, ops)}
}

func (r *redisBackend) queueRun(sb *store.Batch, customer string, mode Mode, ops []Op) *store.Call {
	keys, args := r.encode(customer, ops, false, []any{string(mode), r.nowArg()})
	return sb.Proc(r.run, keys, args...)
}

func (m *memory) queueRun(sb *store.Batch, customer string, mode Mode, ops []Op) *store.Call {
	return sb.Func(func(ctx context.Context) (any, error) { return m.Run(ctx, customer, mode, ops) })
}

// queueRelease adds a Release of ops to batch sb.
func queueRelease(sb *store.Batch, b Backend, customer string, ops []Op) *store.Call {
	return b.queueRelease(sb, customer, ops)
}

func (r *redisBackend) queueRelease(sb *store.Batch, customer string, ops []Op) *store.Call {
	keys, args := r.encode(customer, ops, true, []any{r.nowArg()})
	return sb.Proc(r.release, keys, args...)
}

func (m *memory) queueRelease(sb *store.Batch, customer string, ops []Op) *store.Call {
	return sb.Func(func(ctx context.Context) (any, error) { return nil, m.Release(ctx, customer, ops) })
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
