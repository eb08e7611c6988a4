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
	if r, ok := s.Backend.(*redisBackend); ok && sb.Redis() {
		keys := []string{r.listKey(customer), r.counterKey(customer, KindOptedOut), r.flagKey(customer)}
		if sb.Cluster() {
			l.global = sb.Side(redis.NewBoolCmd(context.Background(), "hexists", r.listKey(GlobalList), hash))
		} else {
			keys = append(keys, r.listKey(GlobalList))
		}
		l.call = sb.Proc(r.rcpt, keys, hash, st.Escalation.index(now), st.Escalation.Buckets, ttlMillis(st.Escalation), st.Threshold, now.Unix())
		return l
	}
	b := s.Backend
	l.call = sb.Func(func(ctx context.Context) (any, error) {
		list, err := b.Lookup(ctx, customer, hash)
		if err != nil || list == "" {
			return lookupReply{list: list}, err
		}
		hits, raised, err := b.Hit(ctx, customer, st.Escalation, st.Threshold, now)
		return lookupReply{list: list, hits: hits, raised: raised}, err
	})
	return l
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
	if r, ok := s.Backend.(*redisBackend); ok && sb.Redis() {
		fpKey := r.h.CustomerKey(customer, "fp", "-")
		n := rcpts
		if fp == "" {
			n = 0
		} else {
			fpKey = r.h.CustomerKey(customer, "fp", fp)
		}
		// "1": bulk by its headers; "tN": read when the count passes N.
		rd := "t" + strconv.Itoa(threshold)
		if byHeaders {
			rd = "1"
		}
		p.call = sb.Proc(r.eom, []string{fpKey, r.flagKey(customer), r.counterKey(customer, KindDelivered), r.counterKey(customer, KindComplaint)},
			n, fpWindow.Milliseconds(), p.bucket, rate.Buckets, ttlMillis(rate), rcpts, rd)
		return p
	}
	b := s.Backend
	p.call = sb.Func(func(ctx context.Context) (any, error) {
		if rcpts > 0 {
			if _, err := b.Count(ctx, customer, KindDelivered, rcpts, rate, now); err != nil {
				return BulkState{}, err
			}
		}
		if !byHeaders && fp == "" {
			return BulkState{}, nil
		}
		return b.Bulk(ctx, customer, fp, rcpts, fpWindow, rate, now)
	})
	return p
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
	if r, ok := s.Backend.(*redisBackend); ok && sb.Redis() {
		fpKey := r.h.CustomerKey(customer, "fp", "-")
		n := p.rcpts
		if p.fp == "" {
			n = 0
		} else {
			fpKey = r.h.CustomerKey(customer, "fp", p.fp)
		}
		return sb.Proc(r.finish, []string{fpKey, r.counterKey(customer, KindDelivered)}, n, strconv.FormatInt(p.bucket, 10), p.rcpts)
	}
	b := s.Backend
	now := s.Clock.Now()
	return sb.Func(func(ctx context.Context) (any, error) {
		if m, ok := b.(*memory); ok {
			m.giveBack(customer, p.fp, p.rcpts, p.bucket, now)
			return nil, nil
		}
		_, err := b.Count(ctx, customer, KindDelivered, -p.rcpts, s.Settings.Rate, now)
		return nil, err
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
