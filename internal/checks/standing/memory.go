package standing

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/aupguard/aupguard/internal/atomicfile"
	"github.com/aupguard/aupguard/internal/store"
)

// memoryFile is where the memory backend keeps its stops under
// store.path (written at each change: stops change rarely).
const memoryFile = "standing.json"

// memoryBackend is the in-process backend (one gateway).
type memoryBackend struct {
	path string // "" keeps nothing across restarts

	mu     sync.Mutex
	gen    int64
	stops  map[string]Stop
	counts map[string][]stamp
}

// maxMemoryCounts is the number of counted senders above which the
// memory backend sweeps the ones whose findings left the window.
const maxMemoryCounts = 4096

// stamp is one counted content finding.
type stamp struct {
	at  time.Time
	ref string
}

func newMemoryBackend(h *store.Handle) (*memoryBackend, error) {
	m := &memoryBackend{stops: map[string]Stop{}, counts: map[string][]stamp{}}
	if h != nil && h.Path != "" {
		m.path = filepath.Join(h.Path, memoryFile)
		var stops []Stop
		if err := atomicfile.ReadJSON(m.path, &stops); err != nil {
			return nil, fmt.Errorf("standing: %w", err)
		}
		for _, s := range stops {
			m.stops[s.Key()] = s
		}
	}
	return m, nil
}

// save writes the stops (m.mu held).
func (m *memoryBackend) save() error {
	if m.path == "" {
		return nil
	}
	b, err := json.Marshal(m.sorted())
	if err != nil {
		return err
	}
	return atomicfile.Write(m.path, b)
}

func (m *memoryBackend) sorted() []Stop {
	out := make([]Stop, 0, len(m.stops))
	for _, s := range m.stops {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

func (m *memoryBackend) Put(_ context.Context, s Stop, onlyNew bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.stops[s.Key()]; ok && onlyNew {
		return false, nil
	}
	old, had := m.stops[s.Key()]
	m.stops[s.Key()] = s
	if err := m.save(); err != nil {
		if had {
			m.stops[s.Key()] = old
		} else {
			delete(m.stops, s.Key())
		}
		return false, fmt.Errorf("standing: %w", err)
	}
	m.gen++
	return true, nil
}

func (m *memoryBackend) Remove(_ context.Context, scope Scope, id string) (Stop, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := Key(scope, id)
	s, ok := m.stops[k]
	if !ok {
		return Stop{}, false, nil
	}
	delete(m.stops, k)
	if err := m.save(); err != nil {
		m.stops[k] = s
		return Stop{}, false, fmt.Errorf("standing: %w", err)
	}
	m.gen++
	return s, true, nil
}

func (m *memoryBackend) List(context.Context) ([]Stop, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sorted(), nil
}

func (m *memoryBackend) Gen(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen, nil
}

func (m *memoryBackend) Count(_ context.Context, key, ref string, now time.Time, window time.Duration) (int, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cut := now.Add(-window)
	kept := m.counts[key][:0]
	for _, s := range m.counts[key] {
		if s.at.After(cut) {
			kept = append(kept, s)
		}
	}
	kept = append(kept, stamp{now, ref})
	m.counts[key] = kept
	if len(m.counts) > maxMemoryCounts {
		// Forget the senders whose findings all left the window.
		for k, st := range m.counts {
			if !st[len(st)-1].at.After(cut) {
				delete(m.counts, k)
			}
		}
	}
	return len(kept), samplesOf(kept), nil
}

func samplesOf(st []stamp) []string {
	if len(st) > MaxSamples {
		st = st[len(st)-MaxSamples:]
	}
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = s.ref
	}
	return out
}

func (m *memoryBackend) ResetCount(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.counts, key)
	return nil
}
