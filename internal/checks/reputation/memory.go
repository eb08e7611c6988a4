package reputation

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/periodic"
)

// memory is the embedded backend. With a path, its state is written to a
// JSON file (atomically: a temporary file renamed) every few seconds when
// it changed and at Close, and read back at start.
type memory struct {
	path string
	clk  clock.Clock

	mu    sync.Mutex
	st    memState
	dirty bool
	// flushes writes the state every memFlushEvery (nil without a path).
	flushes *periodic.Loop
}

type memState struct {
	QueueIDs map[string]memMessage `json:"queue_ids"`
	// Seen holds the counted results per queue id (customer|qid).
	Seen map[string]memSeen `json:"seen"`
	// Buckets: customer -> hour -> field -> count.
	Buckets  map[string]map[int64]map[string]int64 `json:"buckets"`
	Listings map[string]*Listing                   `json:"listings"`
}

type memMessage struct {
	Message
	Expires time.Time `json:"expires"`
}

type memSeen struct {
	Members map[string]bool `json:"members"`
	Expires time.Time       `json:"expires"`
}

const memFlushEvery = 5 * time.Second

// bucketTTL is how long hourly counters are kept: enough for the longest
// window a report or a listing looks back over.
const bucketTTL = 32 * 24 * time.Hour

func openMemory(path string, clk clock.Clock) (*memory, error) {
	if clk == nil {
		clk = clock.System{}
	}
	m := &memory{path: path, clk: clk, st: memState{
		QueueIDs: map[string]memMessage{}, Seen: map[string]memSeen{},
		Buckets: map[string]map[int64]map[string]int64{}, Listings: map[string]*Listing{},
	}}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			var st memState
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, errors.New(path + ": " + err.Error())
			}
			if st.QueueIDs != nil {
				m.st.QueueIDs = st.QueueIDs
			}
			if st.Seen != nil {
				m.st.Seen = st.Seen
			}
			if st.Buckets != nil {
				m.st.Buckets = st.Buckets
			}
			if st.Listings != nil {
				m.st.Listings = st.Listings
			}
		}
		// The memory backend has no logger: a failed flush is retried at
		// the next interval and reported by Close.
		m.flushes = periodic.Start(memFlushEvery, m.flush, nil, periodic.Messages{})
	}
	return m, nil
}

// flush writes the state when it changed.
func (m *memory) flush() error {
	m.mu.Lock()
	if !m.dirty || m.path == "" {
		m.mu.Unlock()
		return nil
	}
	m.expire(m.clk.Now())
	b, err := json.Marshal(&m.st)
	m.dirty = false
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return atomicfile.Write(m.path, b)
}

// Close writes the state a last time.
func (m *memory) Close() error {
	m.flushes.Stop()
	return m.flush()
}

// expire drops what is past its time; m.mu is held.
func (m *memory) expire(now time.Time) {
	for k, v := range m.st.QueueIDs {
		if now.After(v.Expires) {
			delete(m.st.QueueIDs, k)
		}
	}
	for k, v := range m.st.Seen {
		if now.After(v.Expires) {
			delete(m.st.Seen, k)
		}
	}
	oldest := hour(now.Add(-bucketTTL))
	for c, hs := range m.st.Buckets {
		for h := range hs {
			if h < oldest {
				delete(hs, h)
			}
		}
		if len(hs) == 0 {
			delete(m.st.Buckets, c)
		}
	}
}

func (m *memory) Remember(_ context.Context, qid string, msg Message, ttl time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	if old, ok := m.st.QueueIDs[qid]; ok && !now.After(old.Expires) {
		return old.Customer, nil
	}
	m.st.QueueIDs[qid] = memMessage{Message: msg, Expires: now.Add(ttl)}
	m.dirty = true
	return "", nil
}

func (m *memory) Record(_ context.Context, r Result, now, since time.Time, ttl time.Duration) (string, bool, Counts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msg, ok := m.st.QueueIDs[r.QueueID]
	if !ok || m.clk.Now().After(msg.Expires) {
		return "", false, Counts{}, nil
	}
	c := msg.Customer
	sk := c + "|" + r.QueueID
	seen, ok := m.st.Seen[sk]
	if !ok {
		seen = memSeen{Members: map[string]bool{}}
	}
	member := seenMember(r)
	counted := !seen.Members[member]
	if counted {
		seen.Members[member] = true
		seen.Expires = m.clk.Now().Add(ttl)
		m.st.Seen[sk] = seen
		hs := m.st.Buckets[c]
		if hs == nil {
			hs = map[int64]map[string]int64{}
			m.st.Buckets[c] = hs
		}
		b := hs[hour(now)]
		if b == nil {
			b = map[string]int64{}
			hs[hour(now)] = b
		}
		b[fieldOf(r.Class)]++
		if r.Egress != "" && r.Class.Final() {
			b[egressPrefix+r.Egress]++
		}
		m.dirty = true
	}
	return c, counted, m.totals(c, since, now.Add(time.Second)).Counts, nil
}

// seenMember names one counted result of a message.
func seenMember(r Result) string {
	if r.Class.Final() {
		return "f|" + r.RcptHash
	}
	return "d|" + r.RcptHash
}

func (m *memory) totals(c string, since, until time.Time) Totals {
	var t Totals
	hs := m.st.Buckets[c]
	for _, h := range hours(since, until) {
		for f, n := range hs[h] {
			sumFields(&t, f, n)
		}
	}
	return t
}

func (m *memory) Totals(_ context.Context, customers []string, since, until time.Time) (map[string]Totals, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Totals, len(customers))
	for _, c := range customers {
		out[c] = m.totals(c, since, until)
	}
	return out, nil
}

func (m *memory) Observe(_ context.Context, k ListingKey, o Observation, now time.Time, history int) (Listing, Listing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.st.Listings[k.String()]
	if l == nil {
		l = &Listing{ListingKey: k}
		m.st.Listings[k.String()] = l
	}
	before := copyListing(l)
	applyObservation(l, o, now, history)
	m.dirty = true
	return before, copyListing(l), nil
}

// applyObservation is the state machine both backends follow.
func applyObservation(l *Listing, o Observation, now time.Time, history int) {
	l.Checked, l.Error = now, o.Error
	if !o.Answered {
		return
	}
	codes := sortedCodes(o.Codes)
	if !l.Known || l.Listed != o.Listed {
		l.Known, l.Listed, l.Since, l.Notified = true, o.Listed, now, false
		l.History = append([]Change{{Time: now, Listed: o.Listed, Codes: codes}}, l.History...)
		if history > 0 && len(l.History) > history {
			l.History = l.History[:history]
		}
	}
	l.Codes = nil
	if o.Listed {
		l.Codes = codes
	}
}

func copyListing(l *Listing) Listing {
	c := *l
	c.Codes = slices.Clone(l.Codes)
	c.History = slices.Clone(l.History)
	return c
}

func (m *memory) ClaimNotice(_ context.Context, k ListingKey) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.st.Listings[k.String()]
	if l == nil || !l.Listed || l.Notified {
		return false, nil
	}
	l.Notified, m.dirty = true, true
	return true, nil
}

func (m *memory) Unclaim(_ context.Context, k ListingKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.st.Listings[k.String()]; l != nil {
		l.Notified, m.dirty = false, true
	}
	return nil
}

func (m *memory) Listings(_ context.Context, keys []ListingKey) ([]Listing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Listing, 0, len(keys))
	for _, k := range keys {
		if l := m.st.Listings[k.String()]; l != nil {
			out = append(out, copyListing(l))
		} else {
			out = append(out, Listing{ListingKey: k})
		}
	}
	return out, nil
}
