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

// runningLua defines running_window, shared by totalsProc and recordScript:
// it reads a customer's totals over the hourly buckets [lo, cur] in O(1)
// Redis commands from the customer's running-total hash tk (rep:t, in the
// customer's slot), which holds the totals of exactly the buckets [lo, hi]
// of its fields 'lo' and 'hi' (recordScript adds each result it counts to
// the bucket and to the total alike). It moves that range to the window:
// it subtracts the buckets that left it and adds the buckets that entered
// it since the last move (usually none; one an hour), reading only those,
// and writes the hash back when the range moved and write is set (it is
// not in a dry run). The hash is rebuilt from the window's buckets when
// it is missing (the layout before it), unparsable, negative, older than
// the buckets' TTL (a bucket it counts may have expired), or when moving it
// would read more buckets than the window has (a long idle customer, a
// changed window). pre is the buckets' key prefix (the hour number
// follows); oldest the newest hour whose bucket may have expired. It
// returns the window's totals and their fields in order.
const runningLua = `
local function running_window(tk, pre, lo, cur, write, ttl, oldest)
  local acc, order = {}, {}
  local function add(kv, sign)
    for j = 1, #kv, 2 do
      local f = kv[j]
      if f ~= 'lo' and f ~= 'hi' then
        local n = tonumber(kv[j + 1]) or 0
        if acc[f] == nil then
          acc[f] = 0
          order[#order + 1] = f
        end
        acc[f] = acc[f] + sign * n
      end
    end
  end
  local function buckets(a, b, sign)
    for h = a, b do add(redis.call('HGETALL', pre .. string.format('%d', h)), sign) end
  end
  local raw = redis.call('HGETALL', tk)
  local olo, ohi
  for j = 1, #raw, 2 do
    if raw[j] == 'lo' then olo = tonumber(raw[j + 1]) elseif raw[j] == 'hi' then ohi = tonumber(raw[j + 1]) end
  end
  local span = cur - lo + 1
  local rebuild = olo == nil or ohi == nil or ohi < olo - 1 or olo <= oldest
  if not rebuild then
    -- Buckets in [olo, ohi] but not in [lo, cur], and the reverse.
    local drop = math.max(0, math.min(ohi, lo - 1) - olo + 1) + math.max(0, ohi - math.max(olo, cur + 1) + 1)
    local take = math.max(0, math.min(cur, olo - 1) - lo + 1) + math.max(0, cur - math.max(lo, ohi + 1) + 1)
    if drop + take > span then
      rebuild = true
    else
      add(raw, 1)
      buckets(olo, math.min(ohi, lo - 1), -1)
      buckets(math.max(olo, cur + 1), ohi, -1)
      buckets(lo, math.min(cur, olo - 1), 1)
      buckets(math.max(lo, ohi + 1), cur, 1)
      for _, f in ipairs(order) do
        if acc[f] < 0 then rebuild = true end
      end
    end
  end
  if rebuild then
    acc, order = {}, {}
    buckets(lo, cur, 1)
  end
  if write and (rebuild or olo ~= lo or ohi ~= cur) then
    local hs = {'lo', string.format('%d', lo), 'hi', string.format('%d', cur)}
    for _, f in ipairs(order) do
      if acc[f] ~= 0 then
        hs[#hs + 1] = f
        hs[#hs + 1] = string.format('%d', acc[f])
      end
    end
    redis.call('DEL', tk)
    redis.call('HSET', tk, unpack(hs))
    redis.call('EXPIRE', tk, ttl)
  end
  return acc, order
end
`

// totalsProc reads a customer's totals over its bounce window inside the
// end-of-message batch (no round trip of its own) from the running total
// (running_window): KEYS[1] the running-total hash; ARGV: the buckets' key
// prefix, the window's first and last hours, write (1, or 0 in a dry run:
// nothing is written), the hash's TTL in seconds, and the newest hour
// whose bucket may have expired. It replies a flat list {field, total,
// ...} of the non-zero totals; totals are strings, as Lua numbers are
// floats.
var totalsProc = store.NewProc("reputation.totals", runningLua+`
local acc, order = running_window(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[4] == '1', ARGV[5], tonumber(ARGV[6]))
local out = {}
for _, f in ipairs(order) do
  if acc[f] ~= 0 then
    out[#out + 1] = f
    out[#out + 1] = string.format('%d', acc[f])
  end
end
return out
`)

// totals adds to sb the read of a customer's totals over the buckets of
// [since, until) from its running total (totalsProc); write is false in a
// dry run, which writes nothing.
func (r *redisBackend) totals(sb *store.Batch, customer string, now, since, until time.Time, write bool) *store.Call {
	w := "0"
	if write {
		w = "1"
	}
	return sb.Proc(totalsProc, []string{r.totalKey(customer)}, r.bucketPrefix(customer),
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
	now := svc.Clock.Now()
	since, until := svc.window(now)
	remember := t.QueueID != "" && !t.DryRun
	msg := Message{Customer: customer, Bulk: IsBulk(t)}
	ttl := svc.Reputation().Deliveries.QueueIDTTL
	if r, ok := svc.Backend.(*redisBackend); ok && sb.Redis() {
		p.totals = r.totals(sb, customer, now, since, until, !t.DryRun)
		if remember {
			// The queue id's key is outside the customer's slot: beside
			// the script, in the same pipeline.
			qid := t.QueueID
			sb.Side(r.claimCmd(context.Background(), qid, msg, ttl)).Then(func(v any, err error) {
				if cmd, ok := v.(*redis.StringCmd); ok && err == nil {
					if holder, err := claimHolder(cmd); err == nil {
						svc.claimed(qid, customer, holder)
					}
				}
			})
			p.remembered = true
		}
	} else {
		be := svc.Backend
		p.totals = sb.Func(func(ctx context.Context) (any, error) {
			if remember {
				holder, err := be.Remember(ctx, t.QueueID, msg, ttl)
				if err != nil {
					return nil, err
				}
				svc.claimed(t.QueueID, customer, holder)
			}
			tot, err := be.Totals(ctx, []string{customer}, since, until)
			if err != nil {
				return nil, err
			}
			return tot[customer], nil
		})
		p.remembered = remember
	}
	pendingOf.Set(t, p)
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
