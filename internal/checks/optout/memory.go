package optout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/periodic"
)

// memory is the embedded backend of a single-MTA install. Lists and flags
// are persisted to an append-only log of JSON records: every change is
// written and fsynced before the call returns, the log is replayed at
// start (a torn last record, from a crash mid-write, is dropped: it was
// never acknowledged), and rewritten compactly when it has grown to more
// than twice the live state. Complaint and opted-out-send counts are logged
// as they happen; delivered counts and body fingerprint counts (one change
// per message) are logged every SnapshotInterval when they changed, and at
// Close (snapshot.go): a crash loses at most that interval of them.
type memory struct {
	clock clock.Clock

	mu       sync.RWMutex
	lists    map[string]map[string]Entry
	flags    map[string]Flag
	counters map[string]map[int64]int64  // customer "\x00" kind → bucket → count
	sources  map[string]map[string]int64 // list → source → opt-outs recorded
	fps      map[string]fpCount
	fpOps    int
	// rsets are multi-recipient messages' recipient sets (customer "\x00"
	// ref), complained the complaints counted (customer "\x00" ref "\x00"
	// tag), reports the reports per reporter in reportHour (binding.go).
	rsets      map[string]expiring
	complained map[string]expiring
	rsOps      int
	reports    map[string]int64
	reportHour string

	path    string
	log     *os.File
	lock    *os.File
	records int

	dirty     map[cntBucket]struct{} // delivered counts not yet logged
	dirtyFP   map[string]struct{}    // fingerprint counts not yet logged
	dirtyRS   map[string]struct{}    // recipient sets not yet logged
	snapshots *periodic.Loop         // the snapshot loop (snapshot.go)
}

type fpCount struct {
	n       int64
	expires time.Time
}

// record is one line of the log.
type record struct {
	Op    string `json:"op"` // add, del, flag, unflag
	Entry *Entry `json:"e,omitempty"`
	List  string `json:"l,omitempty"`
	Hash  string `json:"h,omitempty"`
	Flag  *Flag  `json:"f,omitempty"`
	// Kind, Bucket and N are a counter record: "cnt" adds N to a bucket,
	// "cntset" sets it (snapshots of counters not logged one by one).
	Kind   string `json:"k,omitempty"`
	Bucket int64  `json:"b,omitempty"`
	N      int64  `json:"n,omitempty"`
}

// openMemory opens the memory backend; path "" keeps nothing across restarts.
func openMemory(path string, clk clock.Clock) (*memory, error) {
	if clk == nil {
		clk = clock.System{}
	}
	m := &memory{
		clock: clk, path: path,
		lists: map[string]map[string]Entry{}, flags: map[string]Flag{},
		counters: map[string]map[int64]int64{}, fps: map[string]fpCount{},
		dirty: map[cntBucket]struct{}{}, dirtyFP: map[string]struct{}{},
		sources: map[string]map[string]int64{},
		rsets:   map[string]expiring{}, complained: map[string]expiring{},
		dirtyRS: map[string]struct{}{}, reports: map[string]int64{},
	}
	if path == "" {
		return m, nil
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	// One process owns the file: a second writer would interleave records.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s is in use by another process (a running gateway? use its admin API, or stop it): %v", path, err)
	}
	m.lock = lock
	if err := m.replay(); err != nil {
		m.Close()
		return nil, err
	}
	m.sweepLocked(m.clock.Now()) // expired complaint bindings are not kept
	live := len(m.flags) + len(m.rsets) + len(m.complained)
	for _, l := range m.lists {
		live += len(l)
	}
	if m.records > 2*live+1000 {
		if err := m.compact(); err != nil {
			m.Close()
			return nil, err
		}
	}
	if m.log == nil {
		m.log, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// replay loads the log.
func (m *memory) replay() error {
	f, err := os.Open(m.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var good int64
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(b) > 0 {
				// A torn last record: the write that was cut never
				// returned, so nothing acknowledged is lost by dropping it.
				return os.Truncate(m.path, good)
			}
			return nil
		}
		if err != nil {
			return err
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("%s:%d: corrupt record: %v", m.path, line, err)
		}
		m.apply(rec)
		m.records++
		good += int64(len(b))
	}
}

func (m *memory) apply(rec record) {
	switch rec.Op {
	case "add":
		if rec.Entry == nil {
			return
		}
		l := m.lists[rec.Entry.List]
		if l == nil {
			l = map[string]Entry{}
			m.lists[rec.Entry.List] = l
		}
		if _, ok := l[rec.Entry.Hash]; !ok {
			l[rec.Entry.Hash] = *rec.Entry
			m.addSource(rec.Entry.List, rec.Entry.Source, 1)
		}
	case "del":
		delete(m.lists[rec.List], rec.Hash)
	case "flag":
		if rec.Flag != nil {
			m.flags[rec.List] = *rec.Flag
		}
	case "unflag":
		delete(m.flags, rec.List)
		delete(m.counters, rec.List+"\x00"+KindOptedOut)
	case "fpset":
		m.fps[rec.List] = fpCount{n: rec.N, expires: time.UnixMilli(rec.Bucket)}
	case "rset":
		m.rsets[rec.List] = expiring{v: rec.Hash, expires: time.UnixMilli(rec.Bucket)}
	case "complained":
		m.complained[rec.List] = expiring{expires: time.UnixMilli(rec.Bucket)}
	case "srcset":
		// A compacted log's adds counted the live entries; this sets the
		// whole count, removed entries included.
		m.addSource(rec.List, rec.Kind, rec.N-m.sources[rec.List][rec.Kind])
	case "cnt", "cntset":
		k := rec.List + "\x00" + rec.Kind
		b := m.counters[k]
		if b == nil {
			b = map[int64]int64{}
			m.counters[k] = b
		}
		if rec.Op == "cnt" {
			b[rec.Bucket] += rec.N
		} else {
			b[rec.Bucket] = rec.N
		}
	}
}

// addSource adds n to a list's count of opt-outs recorded by source.
func (m *memory) addSource(list, source string, n int64) {
	s := m.sources[list]
	if s == nil {
		s = map[string]int64{}
		m.sources[list] = s
	}
	s[source] += n
}

// logged reports whether increments of a counter kind are logged one by
// one: complaints and opted-out sends are rare and must survive a crash;
// delivered counts (one per message) are only snapshotted at Close and
// compaction.
func logged(kind string) bool { return kind != KindDelivered }

// counterRecords returns the live counters as cntset records.
func (m *memory) counterRecords() []record {
	var out []record
	for k, b := range m.counters {
		c, kind, _ := strings.Cut(k, "\x00")
		for i, n := range b {
			out = append(out, record{Op: "cntset", List: c, Kind: kind, Bucket: i, N: n})
		}
	}
	return out
}

// compact rewrites the log with the live state only: to a temporary file,
// fsynced, renamed over the log, and the directory fsynced.
func (m *memory) compact() error {
	tmp := m.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	enc := json.NewEncoder(w)
	n := 0
	for _, l := range m.lists {
		for _, e := range l {
			e := e
			if err := enc.Encode(record{Op: "add", Entry: &e}); err != nil {
				f.Close()
				return err
			}
			n++
		}
	}
	for c, fl := range m.flags {
		fl := fl
		if err := enc.Encode(record{Op: "flag", List: c, Flag: &fl}); err != nil {
			f.Close()
			return err
		}
		n++
	}
	now := m.clock.Now()
	recs := append(m.counterRecords(), m.fpRecords(now)...)
	for _, r := range append(recs, m.bindingRecords(now)...) {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
		n++
	}
	for list, bySource := range m.sources {
		for src, c := range bySource {
			if err := enc.Encode(record{Op: "srcset", List: list, Kind: src, N: c}); err != nil {
				f.Close()
				return err
			}
			n++
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(m.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	m.records = n
	return nil
}

// write appends records and fsyncs them; called with m.mu held.
func (m *memory) write(recs ...record) error {
	if m.log == nil {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if _, err := m.log.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("optout log: %w", err)
	}
	if err := m.log.Sync(); err != nil {
		return fmt.Errorf("optout log: %w", err)
	}
	m.records += len(recs)
	return nil
}

// Close snapshots the counters, and releases the log and its lock.
func (m *memory) Close() error {
	m.stopSnapshots()
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if m.log != nil {
		err = m.flushLocked()
		if e := m.log.Close(); err == nil {
			err = e
		}
		m.log = nil
	}
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
	return err
}

func (m *memory) Add(_ context.Context, es []Entry) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var recs []record
	seen := map[[2]string]bool{}
	for i := range es {
		e := es[i]
		k := [2]string{e.List, e.Hash}
		if _, ok := m.lists[e.List][e.Hash]; ok || seen[k] {
			continue
		}
		seen[k] = true
		recs = append(recs, record{Op: "add", Entry: &e})
	}
	// Durable first, visible after: an opt-out the caller was told about
	// is on disk.
	if err := m.write(recs...); err != nil {
		return 0, err
	}
	for _, r := range recs {
		m.apply(r)
	}
	return len(recs), nil
}

func (m *memory) Sources(_ context.Context, list string) (map[string]int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]int64, len(m.sources[list]))
	for k, v := range m.sources[list] {
		out[k] = v
	}
	return out, nil
}

func (m *memory) Remove(_ context.Context, list, hash string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.lists[list][hash]; !ok {
		return false, nil
	}
	rec := record{Op: "del", List: list, Hash: hash}
	if err := m.write(rec); err != nil {
		return false, err
	}
	m.apply(rec)
	return true, nil
}

func (m *memory) Get(_ context.Context, list, hash string) (Entry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.lists[list][hash]
	return e, ok, nil
}

func (m *memory) Lookup(_ context.Context, customer, hash string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, ok := m.lists[customer][hash]; ok {
		return customer, nil
	}
	if _, ok := m.lists[GlobalList][hash]; ok {
		return GlobalList, nil
	}
	return "", nil
}

func (m *memory) Scan(ctx context.Context, list string, fn func(Entry) error) error {
	m.mu.RLock()
	es := make([]Entry, 0, len(m.lists[list]))
	for _, e := range m.lists[list] {
		es = append(es, e)
	}
	m.mu.RUnlock()
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memory) Len(_ context.Context, list string) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.lists[list])), nil
}

// count adds n to a rolling counter and returns the window's sum, dropping
// buckets that left the window; called with m.mu held.
func (m *memory) count(customer, kind string, n int64, w Window, now time.Time) int64 {
	k := customer + "\x00" + kind
	b := m.counters[k]
	if b == nil {
		b = map[int64]int64{}
		m.counters[k] = b
	}
	cur := w.index(now)
	b[cur] += n
	var sum int64
	for i, v := range b {
		if i <= cur-int64(w.Buckets) {
			delete(b, i)
			continue
		}
		sum += v
	}
	return sum
}

func (m *memory) Buckets(_ context.Context, customer, kind string, w Window, now time.Time) (map[int64]int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	cur := w.index(now)
	out := map[int64]int64{}
	for i, v := range m.counters[customer+"\x00"+kind] {
		if i > cur-int64(w.Buckets) && i <= cur {
			out[i] = v
		}
	}
	return out, nil
}

func (m *memory) Hit(_ context.Context, customer string, w Window, threshold int, now time.Time) (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.write(record{Op: "cnt", List: customer, Kind: KindOptedOut, Bucket: w.index(now), N: 1}); err != nil {
		return 0, false, err
	}
	sum := m.count(customer, KindOptedOut, 1, w, now)
	if threshold <= 0 || sum < int64(threshold) {
		return sum, false, nil
	}
	if _, ok := m.flags[customer]; ok {
		return sum, false, nil
	}
	f := Flag{Reason: "opted_out_sends", Since: now.UTC().Truncate(time.Second), Hits: sum}
	rec := record{Op: "flag", List: customer, Flag: &f}
	if err := m.write(rec); err != nil {
		return sum, false, err
	}
	m.apply(rec)
	return sum, true, nil
}

func (m *memory) Count(_ context.Context, customer, kind string, n int64, w Window, now time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if logged(kind) && n != 0 {
		if err := m.write(record{Op: "cnt", List: customer, Kind: kind, Bucket: w.index(now), N: n}); err != nil {
			return 0, err
		}
	} else if n != 0 && m.log != nil {
		m.dirty[cntBucket{customer + "\x00" + kind, w.index(now)}] = struct{}{}
	}
	return m.count(customer, kind, n, w, now), nil
}

func (m *memory) Sums(_ context.Context, customer string, w Window, now time.Time, kinds ...string) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int64, len(kinds))
	for i, k := range kinds {
		out[i] = m.count(customer, k, 0, w, now)
	}
	return out, nil
}

func (m *memory) Bulk(_ context.Context, customer, fp string, rcpts int64, fpWindow time.Duration, rate Window, now time.Time) (BulkState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st BulkState
	if fp != "" {
		k := customer + "\x00" + fp
		c := m.fps[k]
		if !now.Before(c.expires) {
			// A fixed window starting at the body's first sighting.
			c = fpCount{expires: now.Add(fpWindow)}
		}
		c.n += rcpts
		m.fps[k] = c
		if m.log != nil {
			m.dirtyFP[k] = struct{}{}
		}
		st.Fingerprint = c.n
		if m.fpOps++; m.fpOps%4096 == 0 {
			for k, c := range m.fps {
				if !now.Before(c.expires) {
					delete(m.fps, k)
				}
			}
		}
	}
	if f, ok := m.flags[customer]; ok {
		st.Flag = &f
	}
	st.Delivered = m.count(customer, KindDelivered, 0, rate, now)
	st.Complaints = m.count(customer, KindComplaint, 0, rate, now)
	return st, nil
}

func (m *memory) GetFlag(_ context.Context, customer string) (*Flag, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if f, ok := m.flags[customer]; ok {
		return &f, nil
	}
	return nil, nil
}

func (m *memory) SetFlag(_ context.Context, customer string, f Flag) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := record{Op: "flag", List: customer, Flag: &f}
	if err := m.write(rec); err != nil {
		return err
	}
	m.apply(rec)
	return nil
}

func (m *memory) ClearFlag(_ context.Context, customer string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, had := m.flags[customer]
	rec := record{Op: "unflag", List: customer}
	if err := m.write(rec); err != nil {
		return false, err
	}
	m.apply(rec)
	return had, nil
}
