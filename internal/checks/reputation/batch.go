package reputation

import (
	"context"
	"errors"
	"strconv"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/redis/go-redis/v9"
)

// totalsProc sums the fields of a customer's hourly buckets (KEYS, all in
// the customer's slot) inside the end-of-message batch, so that reading
// the bounce rate costs no round trip of its own. It replies a flat list
// {field, total, ...}; totals are strings, as Lua numbers are floats.
var totalsProc = store.NewProc("reputation.totals", `
local acc, order = {}, {}
for i = 1, #KEYS do
  local kv = redis.call('HGETALL', KEYS[i])
  for j = 1, #kv, 2 do
    local f = kv[j]
    if acc[f] == nil then
      acc[f] = 0
      order[#order + 1] = f
    end
    acc[f] = acc[f] + tonumber(kv[j + 1])
  end
end
local out = {}
for _, f in ipairs(order) do
  out[#out + 1] = f
  out[#out + 1] = string.format('%d', acc[f])
end
return out
`)

// eomPending is the bounce_rate check's part of one end-of-message batch.
type eomPending struct {
	totals     *store.Call
	remembered bool
}

type pendingKey struct{}

// batchOf returns the stage's batch, or a batch of its own (own: the
// caller runs it) when the chain has none.
func (s *Service) batchOf(b policy.Batch) (sb *store.Batch, own bool) {
	if sb, ok := b.(*store.Batch); ok && sb != nil {
		return sb, false
	}
	return s.Store.NewBatch(), true
}

// PrepareEOM implements policy.EOMPreparer: the customer's bucket totals
// over the window and, for a message with a queue id, the queue id's
// owner go into the stage's one batch. The queue id is remembered whether
// or not the message is then accepted: a refused message is never queued
// by Postfix, so no delivery line ever names it, and the entry expires.
func (c *Check) PrepareEOM(ctx context.Context, t *policy.Txn, b policy.Batch) {
	if t.Customer == nil || t.Customer.ID == "" {
		return
	}
	svc := c.svc
	sb, own := svc.batchOf(b)
	p := &eomPending{}
	customer := t.Customer.ID
	since, until := svc.window(svc.Clock.Now())
	remember := t.QueueID != "" && !t.DryRun
	msg := Message{Customer: customer, Bulk: IsBulk(t)}
	ttl := svc.Reputation().Deliveries.QueueIDTTL
	if r, ok := svc.Backend.(*redisBackend); ok && sb.Redis() {
		hs := hours(since, until)
		keys := make([]string, len(hs))
		for i, h := range hs {
			keys[i] = r.bucketKey(customer, h)
		}
		p.totals = sb.Proc(totalsProc, keys)
		if remember {
			// The queue id's key is outside the customer's slot: beside
			// the script, in the same pipeline.
			sb.Side(redis.NewStatusCmd(context.Background(), "set", r.qidKey(t.QueueID), r.messageValue(msg), "px", ttl.Milliseconds()))
			p.remembered = true
		}
	} else {
		be := svc.Backend
		p.totals = sb.Func(func(ctx context.Context) (any, error) {
			if remember {
				if err := be.Remember(ctx, t.QueueID, msg, ttl); err != nil {
					return nil, err
				}
			}
			tot, err := be.Totals(ctx, []string{customer}, since, until)
			if err != nil {
				return nil, err
			}
			return tot[customer], nil
		})
		p.remembered = remember
	}
	t.SetValue(pendingKey{}, p)
	if own {
		ctx, cancel := svc.Store.Context(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// totals returns the prepared totals of a customer's window.
func (p *eomPending) result() (Totals, error) {
	v, err := p.totals.Result()
	if err != nil {
		return Totals{}, err
	}
	switch x := v.(type) {
	case Totals:
		return x, nil
	case []any:
		var t Totals
		for i := 0; i+1 < len(x); i += 2 {
			f, _ := x[i].(string)
			s, _ := x[i+1].(string)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return Totals{}, store.Unavailable(errors.New("reputation: unexpected totals reply"))
			}
			sumFields(&t, f, n)
		}
		return t, nil
	}
	return Totals{}, store.Unavailable(errors.New("reputation: unexpected totals reply"))
}

var _ policy.EOMPreparer = (*Check)(nil)
