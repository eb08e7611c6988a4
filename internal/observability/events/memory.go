package events

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// backend stores and queries events. memory and redisBackend implement it;
// one shared table test runs against both.
type backend interface {
	write(ctx context.Context, evs []Event) error
	query(ctx context.Context, q Query) ([]Event, error)
	aggregates(ctx context.Context, q AggQuery) ([]Bucket, error)
	close() error
}

type aggKey struct {
	customer string
	hour     int64 // Unix seconds of the UTC hour
}

// memory is the embedded backend: a ring of the newest events, hourly
// counters, and optionally a JSON-lines file every event is appended to
// and that is read back at start.
type memory struct {
	clock     clock.Clock
	retention time.Duration // of single events
	aggKeep   time.Duration // of counters

	mu     sync.RWMutex
	ring   []Event // grows up to size, then wraps
	size   int
	next   int // ring slot of the next event once it wraps
	full   bool
	agg    map[aggKey]map[string]int64
	pruned time.Time

	file *os.File
	w    *bufio.Writer
}

func newMemory(clk clock.Clock, ring int, retention, aggKeep time.Duration) *memory {
	return &memory{clock: clk, retention: retention, aggKeep: aggKeep, size: ring, agg: map[aggKey]map[string]int64{}}
}

// openFile loads the events of path still within the counters' retention
// and, when appendTo, keeps the file open for appending (compacting it
// first when more than a quarter of its lines expired). A torn last line
// (a crash mid-write) is skipped.
func (m *memory) openFile(path string, appendTo bool) error {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !appendTo {
			// A fresh install: the gateway has recorded nothing yet. That
			// is an empty record (an empty report), not an error.
			return nil
		}
	case err != nil:
		return fmt.Errorf("events file: %w", err)
	default:
		kept, expired, err := m.load(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("events file %s: %w", path, err)
		}
		if appendTo && expired > 0 && expired*4 > kept+expired {
			if err := m.compact(path); err != nil {
				return err
			}
		}
	}
	if !appendTo {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("events file: %w", err)
	}
	m.file, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("events file: %w", err)
	}
	m.w = bufio.NewWriterSize(m.file, 64<<10)
	return nil
}

func (m *memory) load(r io.Reader) (kept, expired int, err error) {
	now := m.clock.Now()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var evs []Event
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Time.IsZero() {
			continue
		}
		if now.Sub(e.Time) > m.aggKeep {
			expired++
			continue
		}
		kept++
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	// The file is in arrival order; the ring wants time order.
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	m.add(evs, false)
	return kept, expired, nil
}

// compact rewrites the file with the events of the ring's period... and
// of the counters' period: the file is where the counters come from.
func (m *memory) compact(path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("events file compaction: %w", err)
	}
	src, err := os.Open(path)
	if err != nil {
		f.Close()
		return fmt.Errorf("events file compaction: %w", err)
	}
	defer src.Close()
	now := m.clock.Now()
	w := bufio.NewWriter(f)
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil || now.Sub(e.Time) > m.aggKeep {
			continue
		}
		w.Write(sc.Bytes())
		w.WriteByte('\n')
	}
	err = errors.Join(sc.Err(), w.Flush(), f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("events file compaction: %w", err)
	}
	return nil
}

func (m *memory) write(_ context.Context, evs []Event) error {
	m.add(evs, true)
	if m.w == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	enc := json.NewEncoder(m.w)
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			return fmt.Errorf("events file: %w", err)
		}
	}
	// One write(2) per batch; the OS writes it out. A crash loses at most
	// what the kernel had not written, never a reply.
	if err := m.w.Flush(); err != nil {
		return fmt.Errorf("events file: %w", err)
	}
	return nil
}

// add puts events into the ring (those within the retention) and counters.
func (m *memory) add(evs []Event, prune bool) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range evs {
		e := &evs[i]
		k := aggKey{e.CustomerOf(), e.Time.UTC().Truncate(time.Hour).Unix()}
		c := m.agg[k]
		if c == nil {
			c = map[string]int64{}
			m.agg[k] = c
		}
		for _, x := range e.Counters() {
			c[x.Field] += x.N
		}
		if now.Sub(e.Time) > m.retention || m.size == 0 {
			continue
		}
		if !m.full {
			m.ring = append(m.ring, *e)
			if len(m.ring) == m.size {
				m.full = true
			}
			continue
		}
		m.ring[m.next] = *e
		m.next = (m.next + 1) % m.size
	}
	if prune && now.Sub(m.pruned) > time.Hour {
		m.pruned = now
		cut := now.Add(-m.aggKeep).Unix()
		for k := range m.agg {
			if k.hour < cut {
				delete(m.agg, k)
			}
		}
	}
}

// query scans the ring newest first.
func (m *memory) query(_ context.Context, q Query) ([]Event, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := len(m.ring)
	cut := m.clock.Now().Add(-m.retention)
	var out []Event
	for i := 0; i < n && len(out) < q.limit(); i++ {
		// Newest first: before wrapping the newest is the last appended;
		// after, the one before next.
		j := n - 1 - i
		if m.full {
			j = (m.next - 1 - i + 2*n) % n
		}
		e := &m.ring[j]
		if e.Time.Before(cut) || !q.match(e) {
			continue
		}
		out = append(out, *e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

func (m *memory) aggregates(_ context.Context, q AggQuery) ([]Bucket, error) {
	sp := q.span()
	since, until := q.Since.UTC().Truncate(sp), q.Until
	m.mu.RLock()
	defer m.mu.RUnlock()
	byKey := map[aggKey]*Bucket{}
	for k, c := range m.agg {
		if q.Customer != "" && k.customer != q.Customer {
			continue
		}
		t := time.Unix(k.hour, 0).UTC()
		if t.Before(since) || !t.Before(until) {
			continue
		}
		start := t.Truncate(sp)
		bk := aggKey{k.customer, start.Unix()}
		b := byKey[bk]
		if b == nil {
			b = &Bucket{Customer: k.customer, Start: start, Span: sp, Counts: map[string]int64{}}
			byKey[bk] = b
		}
		for f, n := range c {
			b.Counts[f] += n
		}
	}
	return sortBuckets(byKey), nil
}

func sortBuckets(m map[aggKey]*Bucket) []Bucket {
	out := make([]Bucket, 0, len(m))
	for _, b := range m {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].Customer < out[j].Customer
	})
	return out
}

func (m *memory) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.file == nil {
		return nil
	}
	err := errors.Join(m.w.Flush(), m.file.Sync(), m.file.Close())
	m.file, m.w = nil, nil
	return err
}
