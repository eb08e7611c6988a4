package optout

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aupguard/aupguard/internal/store"
)

// The opt-out work of a stage goes into the store's batch as procs of the
// family's Lua (lua/rcpt.lua, eom.lua, finish.lua, rset.lua): the
// recipient lookup with its escalation count at RCPT, the bulk state with
// the delivered reservation at end of message, and the give-back of a
// refused message. The memory backend does the same with its methods
// (memory.go is the reference).

// batchOf returns the stage's batch, or one of the service's own that the
// caller runs at once (own is true) when there is none.
func (s *Service) batchOf(b *store.Batch) (sb *store.Batch, own bool) {
	if b != nil {
		return b, false
	}
	return s.h.NewBatch(), true
}

// lookup is a recipient lookup added to a batch.
type lookup struct {
	call, global *store.Call
}

// queueLookup adds the lookup of hash for customer, with the escalation
// count when the recipient is listed. A dry run (explain) only reads.
func (s *Service) queueLookup(sb *store.Batch, customer, hash string, dry bool) *lookup {
	st := s.Settings
	now := s.Clock.Now()
	l := &lookup{}
	if dry {
		b := s.Backend
		l.call = sb.Func(func(ctx context.Context) (any, error) {
			list, err := b.Lookup(ctx, customer, hash)
			return lookupReply{list: list}, err
		})
		return l
	}
	l.call, l.global = s.Backend.queueLookup(sb, customer, hash, st.Escalation, st.Threshold, now)
	return l
}

// batcher is the batch half of a Backend: each backend adds a stage's
// opt-out work to the stage's batch its own way, Redis as calls of the
// family's procs (lua/), memory as Go functions over its methods.
type batcher interface {
	// queueLookup adds a recipient lookup with the escalation count of a
	// listed recipient; global, when not nil, is the provider-wide list's
	// read beside the script (another Cluster slot).
	queueLookup(sb *store.Batch, customer, hash string, esc Window, threshold int, now time.Time) (call, global *store.Call)
	// queueEOM adds bulk_mail's end-of-message work (see Service.queueEOM).
	queueEOM(sb *store.Batch, q eomQuery) *store.Call
	// queueGiveBack gives back what queueEOM reserved for p.
	queueGiveBack(sb *store.Batch, customer string, p *bulkPending, rate Window, now time.Time) *store.Call
	// queueRecipients stores a message's recipient set.
	queueRecipients(sb *store.Batch, customer, ref string, tags []string, ttl time.Duration, now time.Time) *store.Call
}

func (r *redisBackend) queueLookup(sb *store.Batch, customer, hash string, esc Window, threshold int, now time.Time) (call, global *store.Call) {
	keys := []string{r.listKey(customer), r.counterKey(customer, KindOptedOut), r.flagKey(customer)}
	if sb.Cluster() {
		global = sb.Side(redis.NewBoolCmd(context.Background(), "hexists", r.listKey(GlobalList), hash))
	} else {
		keys = append(keys, r.listKey(GlobalList))
	}
	return sb.Proc(r.rcpt, keys, hash, esc.index(now), esc.Buckets, ttlMillis(esc), threshold, now.Unix()), global
}

func (m *memory) queueLookup(sb *store.Batch, customer, hash string, esc Window, threshold int, now time.Time) (call, global *store.Call) {
	return sb.Func(func(ctx context.Context) (any, error) {
		list, err := m.Lookup(ctx, customer, hash)
		if err != nil || list == "" {
			return lookupReply{list: list}, err
		}
		hits, raised, err := m.Hit(ctx, customer, esc, threshold, now)
		return lookupReply{list: list, hits: hits, raised: raised}, err
	}), nil
}

// lookupReply is a lookup's result from a backend's own methods.
type lookupReply struct {
	list   string
	hits   int64
	raised bool
}

// result returns the list that suppresses the recipient ("" none), the
// escalation count and whether this send raised the flag. err is a lookup
// failure; hitErr a failed count (the refusal stands).
func (l *lookup) result(ctx context.Context, s *Service, customer string) (list string, hits int64, raised bool, err, hitErr error) {
	v, cerr := l.call.Result()
	if x, ok := v.(lookupReply); ok { // a backend's own methods
		if x.list == "" {
			return "", 0, false, cerr, nil
		}
		return x.list, x.hits, x.raised, nil, cerr
	}
	if cerr != nil {
		return "", 0, false, cerr, nil
	}
	if l.global != nil {
		if _, gerr := l.global.Result(); gerr != nil {
			return "", 0, false, gerr, nil
		}
	}
	a, _ := v.([]any)
	if len(a) != 3 {
		return "", 0, false, store.Unavailable(errors.New("optout: unexpected batch reply")), nil
	}
	code, _ := a[0].(int64)
	hits, _ = a[1].(int64)
	r, _ := a[2].(int64)
	switch code {
	case 1:
		return customer, hits, r == 1, nil, nil
	case 2:
		return GlobalList, hits, r == 1, nil, nil
	}
	if l.global != nil {
		if v, _ := l.global.Result(); isTrue(v) {
			// Only on the provider-wide list, in another Cluster slot:
			// the escalation is counted now (a refusal, not the hot path).
			hits, raised, hitErr = s.Backend.Hit(ctx, customer, s.Settings.Escalation, s.Settings.Threshold, s.Clock.Now())
			return GlobalList, hits, raised, nil, hitErr
		}
	}
	return "", 0, false, nil, nil
}

// bulkPending is the bulk state and delivered reservation of one message.
type bulkPending struct {
	call   *store.Call
	fp     string
	rcpts  int64
	bucket int64
}

// queueEOM adds bulk_mail's end-of-message work: the fingerprint count
// (fp != ""), the reservation of the delivered recipients and, when read,
// the flag and the complaint-rate sums.
func (s *Service) queueEOM(sb *store.Batch, customer, fp string, rcpts int64, byHeaders bool, threshold int, dry bool) *bulkPending {
	now := s.Clock.Now()
	rate := s.Settings.Rate
	fpWindow := s.Settings.FingerprintWindow
	p := &bulkPending{fp: fp, rcpts: rcpts, bucket: rate.index(now)}
	if dry {
		// A dry run (explain) reserves nothing and counts no fingerprint:
		// it reads the flag and the complaint rate only.
		b := s.Backend
		p.call = sb.Func(func(ctx context.Context) (any, error) {
			if !byHeaders {
				return BulkState{}, nil
			}
			return b.Bulk(ctx, customer, "", rcpts, fpWindow, rate, now)
		})
		return p
	}
	p.call = s.Backend.queueEOM(sb, eomQuery{customer: customer, fp: fp, rcpts: rcpts, byHeaders: byHeaders,
		threshold: threshold, bucket: p.bucket, rate: rate, fpWindow: fpWindow, now: now})
	return p
}

// eomQuery is bulk_mail's end-of-message work for one message.
type eomQuery struct {
	customer, fp string
	rcpts        int64
	byHeaders    bool
	threshold    int
	bucket       int64
	rate         Window
	fpWindow     time.Duration
	now          time.Time
}

func (r *redisBackend) queueEOM(sb *store.Batch, q eomQuery) *store.Call {
	fpKey := r.h.CustomerKey(q.customer, "fp", "-")
	n := q.rcpts
	if q.fp == "" {
		n = 0
	} else {
		fpKey = r.h.CustomerKey(q.customer, "fp", q.fp)
	}
	// "1": bulk by its headers; "tN": read when the count passes N.
	rd := "t" + strconv.Itoa(q.threshold)
	if q.byHeaders {
		rd = "1"
	}
	return sb.Proc(r.eom, []string{fpKey, r.flagKey(q.customer), r.counterKey(q.customer, KindDelivered), r.counterKey(q.customer, KindComplaint)},
		n, q.fpWindow.Milliseconds(), q.bucket, q.rate.Buckets, ttlMillis(q.rate), q.rcpts, rd)
}

func (m *memory) queueEOM(sb *store.Batch, q eomQuery) *store.Call {
	return sb.Func(func(ctx context.Context) (any, error) {
		if q.rcpts > 0 {
			if _, err := m.Count(ctx, q.customer, KindDelivered, q.rcpts, q.rate, q.now); err != nil {
				return BulkState{}, err
			}
		}
		if !q.byHeaders && q.fp == "" {
			return BulkState{}, nil
		}
		return m.Bulk(ctx, q.customer, q.fp, q.rcpts, q.fpWindow, q.rate, q.now)
	})
}

// result returns the bulk state.
func (p *bulkPending) result() (BulkState, error) {
	v, err := p.call.Result()
	if err != nil {
		return BulkState{}, err
	}
	switch x := v.(type) {
	case BulkState:
		return x, nil
	case []any:
		if st, ok := bulkStateOf(x); ok {
			return st, nil
		}
	}
	return BulkState{}, store.Unavailable(errors.New("optout: unexpected bulk batch reply"))
}

// queueGiveBack adds the give-back of what p reserved (the message was not
// delivered).
func (s *Service) queueGiveBack(sb *store.Batch, customer string, p *bulkPending) *store.Call {
	return s.Backend.queueGiveBack(sb, customer, p, s.Settings.Rate, s.Clock.Now())
}

func (r *redisBackend) queueGiveBack(sb *store.Batch, customer string, p *bulkPending, _ Window, _ time.Time) *store.Call {
	fpKey := r.h.CustomerKey(customer, "fp", "-")
	n := p.rcpts
	if p.fp == "" {
		n = 0
	} else {
		fpKey = r.h.CustomerKey(customer, "fp", p.fp)
	}
	return sb.Proc(r.finish, []string{fpKey, r.counterKey(customer, KindDelivered)}, n, strconv.FormatInt(p.bucket, 10), p.rcpts)
}

func (m *memory) queueGiveBack(sb *store.Batch, customer string, p *bulkPending, _ Window, now time.Time) *store.Call {
	return sb.Func(func(context.Context) (any, error) {
		m.giveBack(customer, p.fp, p.rcpts, p.bucket, now)
		return nil, nil
	})
}

// giveBack undoes a message's fingerprint count and delivered reservation
// in the bucket it went to (memory's counterpart of lua/finish.lua).
func (m *memory) giveBack(customer, fp string, rcpts, bucket int64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if fp != "" {
		k := customer + "\x00" + fp
		if c, ok := m.fps[k]; ok && now.Before(c.expires) {
			c.n -= rcpts
			m.fps[k] = c
		}
	}
	if b := m.counters[customer+"\x00"+KindDelivered]; b != nil {
		if v, ok := b[bucket]; ok {
			if v -= rcpts; v <= 0 {
				delete(b, bucket)
			} else {
				b[bucket] = v
			}
		}
	}
}

func isTrue(v any) bool {
	c, ok := v.(*redis.BoolCmd)
	return ok && c.Val()
}
