package ratelimit

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/periodic"
)

// SnapshotInterval is how often the memory backend writes its counters
// when they changed. After a crash (SIGKILL, OOM kill) at most this much
// counting is lost: a customer can exceed a quota by at most what it sent
// in the last interval.
const SnapshotInterval = time.Second

// startSnapshots starts the loop that writes the counters every
// SnapshotInterval while they change.
func (m *memory) startSnapshots(log *slog.Logger) {
	m.snapshots = periodic.Start(SnapshotInterval, m.snapshot, log, periodic.Messages{
		Failed:    "ratelimit: writing the counters' snapshot failed; they will be lost in a crash until it works again",
		Recovered: "ratelimit: counters' snapshot written again",
		Attrs:     []any{"file", m.file},
	})
}

// stopSnapshots ends the loop and waits for it.
func (m *memory) stopSnapshots() { m.snapshots.Stop() }

// snapshot writes the live counters to the file atomically: a temporary
// file, fsynced, renamed over the old one, and the directory fsynced, so
// that a crash at any point leaves either the old or the new snapshot.
// Nothing is written when nothing changed since the last snapshot (a
// command that only reads the counters leaves the file alone).
func (m *memory) snapshot() error {
	m.mu.Lock()
	if !m.dirty {
		m.mu.Unlock()
		return nil
	}
	now := m.clk.Now().UnixMilli()
	for k, v := range m.keys {
		if v.Expire != 0 && v.Expire <= now {
			delete(m.keys, k)
		}
	}
	b, err := json.Marshal(m.keys)
	m.dirty = false
	m.mu.Unlock()
	if err == nil {
		err = atomicfile.Write(m.file, b)
	}
	if err != nil {
		m.mu.Lock()
		m.dirty = true // try again at the next tick
		m.mu.Unlock()
		return fmt.Errorf("ratelimit: %w", err)
	}
	return nil
}
