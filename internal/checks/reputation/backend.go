package reputation

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/store"
)

// Counts are a customer's delivery results over a period, per class.
type Counts struct {
	Sent     int64 `json:"sent"`
	Hard     int64 `json:"hard_bounces"`
	Policy   int64 `json:"policy_bounces"`
	Other    int64 `json:"other_bounces"`
	Deferred int64 `json:"deferred"`
}

// Final is the number of final results: the bounce rate's denominator.
func (c Counts) Final() int64 { return c.Sent + c.Hard + c.Policy + c.Other }

// HardRate is hard bounces among final results (0 without any).
func (c Counts) HardRate() float64 {
	if f := c.Final(); f > 0 {
		return float64(c.Hard) / float64(f)
	}
	return 0
}

func (c *Counts) addField(field string, n int64) {
	switch field {
	case fieldOf(Sent):
		c.Sent += n
	case fieldOf(HardBounce):
		c.Hard += n
	case fieldOf(PolicyBounce):
		c.Policy += n
	case fieldOf(OtherBounce):
		c.Other += n
	case fieldOf(Deferred):
		c.Deferred += n
	}
}

// Totals are Counts plus the final results per egress address.
type Totals struct {
	Counts
	// Egress counts final results by the egress address they left from.
	Egress map[string]int64 `json:"egress,omitempty"`
}

// Counter fields of an hourly bucket.
const egressPrefix = "e|"

func fieldOf(c Class) string {
	switch c {
	case Sent:
		return "s"
	case HardBounce:
		return "h"
	case PolicyBounce:
		return "p"
	case OtherBounce:
		return "o"
	case Deferred:
		return "d"
	}
	return ""
}

// Message is what the gateway remembers of an accepted message, by queue id.
type Message struct {
	Customer string
	// Bulk is set when the message was bulk mail.
	Bulk bool
}

// Result is one delivery result to count.
type Result struct {
	QueueID string
	// RcptHash is the keyed hash of the recipient: one result per
	// recipient and class is counted, so a log read twice counts once.
	RcptHash string
	Class    Class
	// Egress is the address the delivery left from ("" unknown).
	Egress string
}

// ListingKey names one address in one zone.
type ListingKey struct {
	Address string `json:"address"`
	Zone    string `json:"zone"`
}

func (k ListingKey) String() string { return k.Address + "|" + k.Zone }

// Listing is the state of one address in one zone.
type Listing struct {
	ListingKey
	// Known is false before the first answered query.
	Known  bool `json:"known"`
	Listed bool `json:"listed"`
	// Codes are the zone's answers (A records) while listed.
	Codes []string `json:"codes,omitempty"`
	// Since is when the current state was first seen.
	Since time.Time `json:"since"`
	// Checked is the last query; Error its failure ("" when answered).
	Checked time.Time `json:"checked"`
	Error   string    `json:"error,omitempty"`
	// Notified is set once the postmaster was mailed about this listing.
	Notified bool `json:"notified"`
	// History are the state changes, newest first.
	History []Change `json:"history,omitempty"`
}

// Change is one change of a listing's state.
type Change struct {
	Time   time.Time `json:"time"`
	Listed bool      `json:"listed"`
	Codes  []string  `json:"codes,omitempty"`
}

// Observation is the outcome of one query.
type Observation struct {
	// Answered is false when the query failed (timeout, SERVFAIL, an
	// error code of the zone): the state is kept.
	Answered bool
	Listed   bool
	Codes    []string
	Error    string
}

// Backend is where the reputation state lives: the memory backend (one
// MTA) or Redis (shared by all MTAs). Redis failures are wrapped as
// store.ErrUnavailable.
type Backend interface {
	// batcher adds bounce_rate's work to a stage's batch (batch.go).
	batcher
	// Remember maps an accepted message's queue id to its customer unless
	// the queue id is mapped already: the first writer wins, so that a
	// second transaction claiming the same queue id (a forged one) cannot
	// re-label the message. It returns the customer already holding the
	// queue id, or "" when m was recorded.
	Remember(ctx context.Context, queueID string, m Message, ttl time.Duration) (holder string, err error)
	// Record counts one delivery result for the customer whose message the
	// queue id is. It returns the customer ("" when the queue id is not
	// one the gateway accepted), whether the result was new, and the
	// customer's counts over [since, now].
	Record(ctx context.Context, r Result, now, since time.Time, ttl time.Duration) (customer string, counted bool, c Counts, err error)
	// Totals returns the customers' totals over [since, until); one round trip.
	Totals(ctx context.Context, customers []string, since, until time.Time) (map[string]Totals, error)
	// Observe applies one query's outcome to a listing's state, keeping
	// history entries of changes, and returns the state before and after.
	Observe(ctx context.Context, k ListingKey, o Observation, now time.Time, history int) (before, after Listing, err error)
	// ClaimNotice marks the current listing of k as notified, reporting
	// whether this caller did it (so that one MTA mails the postmaster);
	// Unclaim undoes it when the mail could not be sent.
	ClaimNotice(ctx context.Context, k ListingKey) (bool, error)
	Unclaim(ctx context.Context, k ListingKey) error
	// Listings returns the states of keys, with their history.
	Listings(ctx context.Context, keys []ListingKey) ([]Listing, error)
}

// Open returns the handle's one reputation backend.
func Open(h *store.Handle) (Backend, error) {
	b, err := store.SharedOf(h, "reputation", func() (Backend, error) {
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
			_ = h.LoadScripts(ctx, r.scripts()...)
			return r, nil
		default:
			path := ""
			if h.Path != "" {
				path = filepath.Join(h.Path, "reputation.json")
			}
			m, err := openMemory(path, h.Clock)
			if err != nil {
				return nil, err
			}
			return m, nil
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reputation store: %w", err)
	}
	return b, nil
}

// hour numbers the hourly buckets.
func hour(t time.Time) int64 { return t.Unix() / 3600 }

// hours returns the numbers of the hourly buckets that start before
// until and end after since: the buckets of [since, until).
func hours(since, until time.Time) []int64 {
	var out []int64
	last := hour(until.Add(-time.Nanosecond))
	for h := hour(since); h <= last && len(out) < 24*400; h++ {
		out = append(out, h)
	}
	return out
}

func sumFields(t *Totals, field string, n int64) {
	if a, ok := strings.CutPrefix(field, egressPrefix); ok {
		if t.Egress == nil {
			t.Egress = map[string]int64{}
		}
		t.Egress[a] += n
		return
	}
	t.addField(field, n)
}

// sortedCodes returns codes sorted and de-duplicated.
func sortedCodes(codes []string) []string {
	out := append([]string(nil), codes...)
	sort.Strings(out)
	j := 0
	for i, c := range out {
		if i == 0 || c != out[j-1] {
			out[j] = c
			j++
		}
	}
	return out[:j]
}
