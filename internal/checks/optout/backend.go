package optout

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/aupguard/aupguard/internal/store"
)

// Backend is where lists, flags and counters live. Every method that
// changes a list or a flag returns only once the change is durable: fsynced
// to the log (memory backend) or acknowledged by Redis (whose AOF settings
// decide the rest, see docs/optout.md). Failures of Redis are wrapped as
// store.ErrUnavailable.
type Backend interface {
	// batcher adds the checks' work to a stage's batch (batch.go).
	batcher
	// Add stores entries, keeping an existing entry (its first source and
	// time) for an address already on the list; added counts new ones.
	Add(ctx context.Context, es []Entry) (added int, err error)
	// Remove deletes an address (by hash) from a list.
	Remove(ctx context.Context, list, hash string) (bool, error)
	// Get returns one entry.
	Get(ctx context.Context, list, hash string) (Entry, bool, error)
	// Lookup says which list suppresses hash for customer: the customer's
	// own, GlobalList, or "" for none. One round trip.
	Lookup(ctx context.Context, customer, hash string) (string, error)
	// Scan calls fn for every entry of a list, in no particular order.
	Scan(ctx context.Context, list string, fn func(Entry) error) error
	// Len returns the number of entries of a list.
	Len(ctx context.Context, list string) (int64, error)
	// Sources returns how many opt-outs were recorded on a list by each
	// source (unsubscribe, complaint, api, cli, import) since it began: a
	// cumulative count of new entries, kept when an entry is removed later.
	Sources(ctx context.Context, list string) (map[string]int64, error)
	// Hit counts one send to an opted-out recipient in w and, when the
	// count reaches threshold (> 0) and the customer is not flagged yet,
	// raises its flag. It returns the count and whether it raised the flag.
	Hit(ctx context.Context, customer string, w Window, threshold int, now time.Time) (int64, bool, error)
	// Count adds n to a customer's rolling counter kind and returns the sum.
	Count(ctx context.Context, customer, kind string, n int64, w Window, now time.Time) (int64, error)
	// Sums returns the rolling sums of counters kinds.
	Sums(ctx context.Context, customer string, w Window, now time.Time, kinds ...string) ([]int64, error)
	// Buckets returns the live buckets of a customer's rolling counter
	// kind in w (bucket index → count), for trends; it changes nothing.
	Buckets(ctx context.Context, customer, kind string, w Window, now time.Time) (map[int64]int64, error)
	// Bulk adds rcpts to the fingerprint's count (none when fp is empty)
	// and reads the flag and the delivered and complaint sums: all a bulk
	// message needs, in one round trip.
	Bulk(ctx context.Context, customer, fp string, rcpts int64, fpWindow time.Duration, rate Window, now time.Time) (BulkState, error)
	// GetFlag returns the customer's flag, nil when not flagged.
	GetFlag(ctx context.Context, customer string) (*Flag, error)
	// SetFlag raises a flag (replacing any).
	SetFlag(ctx context.Context, customer string, f Flag) error
	// ClearFlag clears the flag and the opted-out send count, reporting
	// whether there was a flag.
	ClearFlag(ctx context.Context, customer string) (bool, error)
	// PutRecipients stores the keyed tags (RcptTag) of a multi-recipient
	// message's recipients under its stamp reference for ttl: what a
	// complaint about the message is checked against.
	PutRecipients(ctx context.Context, customer, ref string, tags []string, ttl time.Duration, now time.Time) error
	// Complain records one complaint in one step (one round trip on
	// Redis): when op.InStore, the recipient's tag must be in the
	// message's stored set (else ComplaintNotRecipient); a complaint of
	// the same message and recipient recorded before is a
	// ComplaintDuplicate; otherwise the entry goes on the list, the
	// complaint is counted and remembered for op.TTL.
	Complain(ctx context.Context, op ComplaintOp) (ComplaintOutcome, error)
	// Reported counts one report from reporter in the hour of now and
	// returns that hour's count (the per-reporter cap).
	Reported(ctx context.Context, reporter string, now time.Time) (int64, error)
}

// ComplaintOp is one complaint to record (Backend.Complain).
type ComplaintOp struct {
	// Customer, Ref and Tag name the complaint: the message (its stamp's
	// reference) and its recipient's tag under that reference.
	Customer, Ref, Tag string
	// InStore asks for the tag to be checked against the message's stored
	// recipient set (a multi-recipient message).
	InStore bool
	// Dedupe are the names ("REF:TAG") the complaint is remembered under:
	// it is a duplicate when any of them was recorded before.
	Dedupe []string
	// Entry is the complainant's suppression entry.
	Entry Entry
	// TTL is how long the complaint is remembered (dedupe).
	TTL time.Duration
	// Rate is the complaint counter's window.
	Rate Window
	Now  time.Time
}

// ComplaintOutcome is what Backend.Complain did.
type ComplaintOutcome struct {
	Status ComplaintStatus
	// Added is 1 when the complainant was newly put on the list.
	Added int
}

// ComplaintStatus says whether a complaint was counted.
type ComplaintStatus int

// Complaint statuses.
const (
	// ComplaintCounted: recorded and counted.
	ComplaintCounted ComplaintStatus = iota
	// ComplaintDuplicate: this message and recipient were counted before;
	// nothing changed.
	ComplaintDuplicate
	// ComplaintNotRecipient: the recipient is not in the message's stored
	// set (or the set is gone); nothing changed.
	ComplaintNotRecipient
)

// Counter kinds.
const (
	// KindOptedOut counts sends to opted-out recipients (escalation).
	KindOptedOut = "o"
	// KindDelivered counts accepted recipients.
	KindDelivered = "d"
	// KindComplaint counts complaints.
	KindComplaint = "c"
)

// BulkState is what the bulk rule reads from the store for one message.
type BulkState struct {
	// Fingerprint is the number of recipients the body went to in its window.
	Fingerprint int64
	Flag        *Flag
	Delivered   int64
	Complaints  int64
}

// Open returns the handle's one opt-out backend (shared by the checks, the
// admin API and the commands of this process).
func Open(h *store.Handle) (Backend, error) {
	b, err := store.SharedOf(h, "optout", func() (Backend, error) {
		switch h.Backend {
		case store.Redis:
			r, err := newRedis(h)
			if err != nil {
				return nil, err
			}
			// EVALSHA from the first message on; a failure here is not
			// fatal (Script.Run loads a missing script on NOSCRIPT).
			ctx, cancel := h.Context(context.Background())
			defer cancel()
			if err := h.LoadScripts(ctx, r.scripts()...); err != nil && h.Logger != nil {
				h.Logger.Warn("optout: preloading store scripts failed, they load on first use", "err", err)
			}
			return r, nil
		default:
			path := ""
			if h.Path != "" {
				path = filepath.Join(h.Path, "optout.log")
			}
			m, err := openMemory(path, h.Clock)
			if err != nil {
				return nil, err
			}
			if path != "" {
				m.startSnapshots(h.Logger)
			}
			return m, nil
		}
	})
	if err != nil {
		return nil, fmt.Errorf("optout store: %w", err)
	}
	return b, nil
}
