package reputation

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/redis/go-redis/v9"
)

// totals adds to sb the read of a customer's totals over the buckets of
// [since, until) from its running total (lua/totals.lua); write is false in a
// dry run, which writes nothing.
func (r *redisBackend) totals(sb *store.Batch, customer string, now, since, until time.Time, write bool) *store.Call {
	w := "0"
	if write {
		w = "1"
	}
	return sb.Proc(r.totalsProc, []string{r.totalKey(customer)}, r.bucketPrefix(customer),
		hour(since), hour(until.Add(-time.Nanosecond)), w, int64(bucketTTL/time.Second), oldestBucket(now))
}

// eomPending is the bounce_rate check's part of one end-of-message batch.
type eomPending struct {
	totals     *store.Call
	remembered bool
}

// pendingOf is bounce_rate's part of the message's end-of-message batch.
var pendingOf = policy.NewState[*eomPending]()

// batchOf returns the stage's batch, or a batch of its own (own: the
// caller runs it) when the chain has none.
func (s *Service) batchOf(b *store.Batch) (sb *store.Batch, own bool) {
	if b != nil {
		return b, false
	}
	return s.Store.NewBatch(), true
}

// PrepareEOM implements policy.EOMPreparer: the customer's bucket totals
// over the window and, for a message with a queue id, the queue id's
// owner go into the stage's one batch. The queue id is remembered whether
// or not the message is then accepted: a refused message is never queued
// by Postfix, so no delivery line ever names it, and the entry expires.
func (c *Check) PrepareEOM(ctx context.Context, t *policy.Txn, b *policy.Batch) {
	if t.Customer == nil || t.Customer.ID == "" {
		return
	}
	svc := c.svc
	sb, own := svc.batchOf(b)
	p := &eomPending{}
	customer := t.Customer.ID
	now := svc.Clock.Now()
	since, until := svc.window(now)
	remember := t.QueueID != "" && !t.DryRun
	msg := Message{Customer: customer, Bulk: IsBulk(t)}
	ttl := svc.Reputation().Deliveries.QueueIDTTL
	var qid string
	if remember {
		qid = t.QueueID
	}
	p.totals = svc.Backend.queueEOM(sb, eomQuery{customer: customer, queueID: qid, msg: msg, ttl: ttl,
		now: now, since: since, until: until, write: !t.DryRun, claims: svc})
	p.remembered = remember
	pendingOf.Set(t, p)
	if own {
		ctx, cancel := svc.Store.Context(ctx)
		defer cancel()
		_ = sb.Exec(ctx)
	}
}

// eomQuery is bounce_rate's end-of-message store work for one message:
// the customer's totals over [since, until) and, when queueID is set, the
// claim of the queue id (claimed is told its holder).
type eomQuery struct {
	customer, queueID string
	msg               Message
	ttl               time.Duration
	now, since, until time.Time
	write             bool
	// claims is told who holds the queue id (the Service; an interface,
	// not a method value, which would cost an allocation per message).
	claims claimer
}

// claimer records the holder of a claimed queue id.
type claimer interface {
	claimed(qid, customer, holder string)
}

// batcher is the batch half of a Backend: Redis adds a call of the
// family's totals proc (and the queue id's claim beside it), memory a Go
// function over its methods.
type batcher interface {
	queueEOM(sb *store.Batch, q eomQuery) *store.Call
}

func (r *redisBackend) queueEOM(sb *store.Batch, q eomQuery) *store.Call {
	call := r.totals(sb, q.customer, q.now, q.since, q.until, q.write)
	if q.queueID != "" {
		// The queue id's key is outside the customer's slot: beside the
		// script, in the same pipeline.
		// The callback keeps what it needs, not q (which it would move to
		// the heap).
		qid, customer, claims := q.queueID, q.customer, q.claims
		sb.Side(r.claimCmd(context.Background(), qid, q.msg, q.ttl)).Then(func(v any, err error) {
			if cmd, ok := v.(*redis.StringCmd); ok && err == nil {
				if holder, err := claimHolder(cmd); err == nil {
					claims.claimed(qid, customer, holder)
				}
			}
		})
	}
	return call
}

func (m *memory) queueEOM(sb *store.Batch, q eomQuery) *store.Call {
	return sb.Func(func(ctx context.Context) (any, error) {
		if q.queueID != "" {
			holder, err := m.Remember(ctx, q.queueID, q.msg, q.ttl)
			if err != nil {
				return nil, err
			}
			q.claims.claimed(q.queueID, q.customer, holder)
		}
		tot, err := m.Totals(ctx, []string{q.customer}, q.since, q.until)
		if err != nil {
			return nil, err
		}
		return tot[q.customer], nil
	})
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
