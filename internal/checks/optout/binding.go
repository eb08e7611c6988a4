package optout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/store"
)

// What ties a complaint to one recipient of one message, kept in the store
// (docs/optout.md, "What a complaint report is trusted for"):
//
//   - the recipient set of a multi-recipient message: its recipients' tags
//     (RcptTag, 64 bits each, never an address) under the stamp's
//     reference, for optout.complaints.record_ttl
//     (P{c:ID}:fbr:REF, a string ",tag,tag,...,");
//   - the complaints counted, one per (message, recipient), for the same
//     time (P{c:ID}:fbd:REF:TAG, and for a one-recipient message also
//     under its unsubscribe link's name, P{c:ID}:fbd:uMINUTE:TAG), so a
//     report sent again, by the stamp or by the link, counts once;
//   - the reports received per reporter and hour (P optout:reporter:HOUR:H).

// recipientBlob is the stored form of a recipient set: ",tag,tag,...,".
func recipientBlob(tags []string) string {
	return "," + strings.Join(tags, ",") + ","
}

// reporterKey names a reporter in store keys: a hash, since the name comes
// from the report (or the caller) and is not trusted to be short or clean.
func reporterKey(reporter string) string {
	h := sha256.Sum256([]byte(reporter))
	return hex.EncodeToString(h[:8])
}

func hourOf(now time.Time) string { return strconv.FormatInt(now.Unix()/3600, 10) }

// dedupe returns the names the complaint is remembered under: op.Dedupe,
// or at least its message and recipient.
func (op ComplaintOp) dedupe() []string {
	if len(op.Dedupe) > 0 {
		return op.Dedupe
	}
	return []string{op.Ref + ":" + op.Tag}
}

func (r *redisBackend) rsetKey(customer, ref string) string {
	return r.h.CustomerKey(customer, "fbr", ref)
}

func (r *redisBackend) PutRecipients(ctx context.Context, customer, ref string, tags []string, ttl time.Duration, _ time.Time) error {
	return store.Unavailable(r.h.Client.Set(ctx, r.rsetKey(customer, ref), recipientBlob(tags), ttl).Err())
}

func (r *redisBackend) Complain(ctx context.Context, op ComplaintOp) (ComplaintOutcome, error) {
	check := "0"
	if op.InStore {
		check = "1"
	}
	e := op.Entry
	keys := []string{r.rsetKey(op.Customer, op.Ref), r.listKey(e.List), r.sourcesKey(e.List), r.counterKey(op.Customer, KindComplaint)}
	for _, d := range op.dedupe() {
		keys = append(keys, r.h.CustomerKey(op.Customer, "fbd", d))
	}
	v, err := r.complain.Run(ctx, r.h.Client, keys,
		check, op.Tag, op.TTL.Milliseconds(), e.Hash, encodeEntry(e), e.Source,
		op.Rate.index(op.Now), op.Rate.Buckets, ttlMillis(op.Rate)).Slice()
	if err != nil {
		return ComplaintOutcome{}, store.Unavailable(err)
	}
	if len(v) != 2 {
		return ComplaintOutcome{}, store.Unavailable(errors.New("complaint script: unexpected reply"))
	}
	st, _ := v[0].(int64)
	added, _ := v[1].(int64)
	return ComplaintOutcome{Status: ComplaintStatus(st), Added: int(added)}, nil
}

func (r *redisBackend) Reported(ctx context.Context, reporter string, now time.Time) (int64, error) {
	n, err := r.reported.Run(ctx, r.h.Client, []string{r.h.Key("optout", "reporter", hourOf(now), reporterKey(reporter))},
		(2 * time.Hour).Milliseconds()).Int64()
	return n, store.Unavailable(err)
}

// queueRecipients adds the storing of a multi-recipient message's
// recipient set to the end-of-message batch (no round trip of its own).
func (s *Service) queueRecipients(sb *store.Batch, customer, ref string, tags []string) *store.Call {
	return s.Backend.queueRecipients(sb, customer, ref, tags, s.Settings.RecordTTL, s.Clock.Now())
}

func (r *redisBackend) queueRecipients(sb *store.Batch, customer, ref string, tags []string, ttl time.Duration, _ time.Time) *store.Call {
	return sb.Proc(r.rset, []string{r.rsetKey(customer, ref)}, recipientBlob(tags), ttl.Milliseconds())
}

func (m *memory) queueRecipients(sb *store.Batch, customer, ref string, tags []string, ttl time.Duration, now time.Time) *store.Call {
	return sb.Func(func(ctx context.Context) (any, error) {
		return nil, m.PutRecipients(ctx, customer, ref, tags, ttl, now)
	})
}

// expiring is a memory-backend value with an expiry.
type expiring struct {
	v       string
	expires time.Time
}

// PutRecipients keeps the set in memory; it is logged with the next
// snapshot (at most SnapshotInterval later), like the delivered counts: a
// crash can lose the last second's sets, and complaints about those
// messages are then refused, never wrongly counted.
func (m *memory) PutRecipients(_ context.Context, customer, ref string, tags []string, ttl time.Duration, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := customer + "\x00" + ref
	m.rsets[k] = expiring{v: recipientBlob(tags), expires: now.Add(ttl)}
	if m.log != nil {
		m.dirtyRS[k] = struct{}{}
	}
	if m.rsOps++; m.rsOps%4096 == 0 {
		m.sweepLocked(now)
	}
	return nil
}

// sweepLocked drops expired recipient sets and complaint records.
func (m *memory) sweepLocked(now time.Time) {
	for k, e := range m.rsets {
		if !now.Before(e.expires) {
			delete(m.rsets, k)
		}
	}
	for k, e := range m.complained {
		if !now.Before(e.expires) {
			delete(m.complained, k)
		}
	}
}

// Complain is the memory backend's lua/complain.lua: the complaint record,
// the entry and the count are logged (fsynced) together before it returns.
func (m *memory) Complain(_ context.Context, op ComplaintOp) (ComplaintOutcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := op.Now
	if op.InStore {
		set, ok := m.rsets[op.Customer+"\x00"+op.Ref]
		if !ok || !now.Before(set.expires) || !strings.Contains(set.v, ","+op.Tag+",") {
			return ComplaintOutcome{Status: ComplaintNotRecipient}, nil
		}
	}
	var recs []record
	for _, d := range op.dedupe() {
		dk := op.Customer + "\x00" + d
		if c, ok := m.complained[dk]; ok && now.Before(c.expires) {
			return ComplaintOutcome{Status: ComplaintDuplicate}, nil
		}
		recs = append(recs, record{Op: "complained", List: dk, Bucket: now.Add(op.TTL).UnixMilli()})
	}
	added := 0
	if _, ok := m.lists[op.Entry.List][op.Entry.Hash]; !ok {
		e := op.Entry
		recs = append(recs, record{Op: "add", Entry: &e})
		added = 1
	}
	recs = append(recs, record{Op: "cnt", List: op.Customer, Kind: KindComplaint, Bucket: op.Rate.index(now), N: 1})
	if err := m.write(recs...); err != nil {
		return ComplaintOutcome{}, err
	}
	for _, r := range recs[:len(recs)-1] {
		m.apply(r)
	}
	m.count(op.Customer, KindComplaint, 1, op.Rate, now)
	return ComplaintOutcome{Status: ComplaintCounted, Added: added}, nil
}

// maxReportersPerHour bounds the memory backend's reporters counted apart
// in one hour.
const maxReportersPerHour = 10000

// Reported counts in memory only: the cap is per hour, and a restart
// starting the hour's count again is harmless.
func (m *memory) Reported(_ context.Context, reporter string, now time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := hourOf(now)
	if m.reportHour != h {
		m.reportHour = h
		clear(m.reports)
	}
	k := reporterKey(reporter)
	if _, ok := m.reports[k]; !ok && len(m.reports) >= maxReportersPerHour {
		// A flood of made-up reporters shares one count (and one cap)
		// rather than growing the map.
		k = "overflow"
	}
	m.reports[k]++
	return m.reports[k], nil
}

// bindingRecords returns the live recipient sets and complaint records as
// log records (compaction).
func (m *memory) bindingRecords(now time.Time) []record {
	var out []record
	for k, e := range m.rsets {
		if now.Before(e.expires) {
			out = append(out, record{Op: "rset", List: k, Hash: e.v, Bucket: e.expires.UnixMilli()})
		}
	}
	for k, e := range m.complained {
		if now.Before(e.expires) {
			out = append(out, record{Op: "complained", List: k, Bucket: e.expires.UnixMilli()})
		}
	}
	return out
}
