package optout

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aupguard/aupguard/internal/periodic"
)

// SnapshotInterval is how often the memory backend logs the delivered and
// body fingerprint counts and the recipient sets that changed. After a crash (SIGKILL, OOM kill) at
// most this much of them is lost; opt-outs, flags, complaint and
// opted-out-send counts are logged before each call returns and lose
// nothing.
const SnapshotInterval = time.Second

// cntBucket names one bucket of one rolling counter.
type cntBucket struct {
	key    string // customer "\x00" kind
	bucket int64
}

// startSnapshots starts the loop that logs the changed counts every
// SnapshotInterval.
func (m *memory) startSnapshots(log *slog.Logger) {
	m.snapshots = periodic.Start(SnapshotInterval, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.flushLocked()
	}, log, periodic.Messages{
		Failed:    "optout: logging the delivered and fingerprint counts failed; they will be lost in a crash until it works again",
		Recovered: "optout: delivered and fingerprint counts logged again",
		Attrs:     []any{"file", m.path},
	})
}

// stopSnapshots ends the loop and waits for it; called without m.mu.
func (m *memory) stopSnapshots() { m.snapshots.Stop() }

// flushLocked logs the counts changed since the last flush, each as its
// current value (replay sets it), and compacts the log when it has grown
// to more than twice the live state; called with m.mu held.
func (m *memory) flushLocked() error {
	if m.log == nil || len(m.dirty) == 0 && len(m.dirtyFP) == 0 && len(m.dirtyRS) == 0 {
		return nil
	}
	recs := make([]record, 0, len(m.dirty)+len(m.dirtyFP)+len(m.dirtyRS))
	for d := range m.dirty {
		n, ok := m.counters[d.key][d.bucket]
		if !ok {
			continue // left the window since
		}
		c, kind, _ := strings.Cut(d.key, "\x00")
		recs = append(recs, record{Op: "cntset", List: c, Kind: kind, Bucket: d.bucket, N: n})
	}
	for k := range m.dirtyFP {
		if c, ok := m.fps[k]; ok {
			recs = append(recs, record{Op: "fpset", List: k, Bucket: c.expires.UnixMilli(), N: c.n})
		}
	}
	for k := range m.dirtyRS {
		if e, ok := m.rsets[k]; ok {
			recs = append(recs, record{Op: "rset", List: k, Hash: e.v, Bucket: e.expires.UnixMilli()})
		}
	}
	if err := m.write(recs...); err != nil {
		return err
	}
	clear(m.dirty)
	clear(m.dirtyFP)
	clear(m.dirtyRS)
	live := len(m.flags) + len(m.fps) + len(m.rsets) + len(m.complained)
	for _, l := range m.lists {
		live += len(l)
	}
	for _, b := range m.counters {
		live += len(b)
	}
	if m.records <= 2*live+1000 {
		return nil
	}
	// compact renames a new file over the log: append to that one.
	if err := m.compact(); err != nil {
		return err
	}
	f, err := os.OpenFile(m.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	old := m.log
	m.log = f
	return old.Close()
}

// fpRecords returns the live fingerprint counts as fpset records.
func (m *memory) fpRecords(now time.Time) []record {
	var out []record
	for k, c := range m.fps {
		if now.Before(c.expires) {
			out = append(out, record{Op: "fpset", List: k, Bucket: c.expires.UnixMilli(), N: c.n})
		}
	}
	return out
}
