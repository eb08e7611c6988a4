package optout

import (
	"testing"
	"time"
)

// crash releases the backend's files the way a killed process would: no
// flush, no snapshot, no clean close.
func crash(m *memory) {
	m.stopSnapshots()
	m.log.Close()
	m.lock.Close()
}

// TestCountsSurviveCrash: delivered counts and body fingerprint counts,
// which are not logged one by one, are in the log within one snapshot
// interval, so a crash after that loses none of them; what a crash before
// the first snapshot loses is at most that interval.
func TestCountsSurviveCrash(t *testing.T) {
	path := t.TempDir() + "/optout.log"
	m, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.startSnapshots(nil)
	w := Window{Width: 24 * time.Hour, Buckets: bucketCount}
	now := time.Now()
	for range 7 {
		if _, err := m.Count(bg, "acme", KindDelivered, 3, w, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Count(bg, "acme", KindComplaint, 1, w, now); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Bulk(bg, "acme", "fp1", 40, time.Hour, w, now); err != nil {
		t.Fatal(err)
	}
	// Wait for the loop to have flushed (the dirty sets are emptied).
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		pending := len(m.dirty) + len(m.dirtyFP)
		m.mu.Unlock()
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the snapshot loop never logged the counts")
		}
		time.Sleep(10 * time.Millisecond)
	}
	crash(m)

	m2, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	sums, _ := m2.Sums(bg, "acme", w, now, KindDelivered, KindComplaint)
	if sums[0] != 21 || sums[1] != 1 {
		t.Fatalf("after a crash: delivered %d complaints %d, want 21 and 1", sums[0], sums[1])
	}
	st, err := m2.Bulk(bg, "acme", "fp1", 2, time.Hour, w, now)
	if err != nil || st.Fingerprint != 42 {
		t.Fatalf("fingerprint count after a crash: %d %v, want 40+2", st.Fingerprint, err)
	}
}

// TestFlushCompactsAndKeepsAppending: a log grown by snapshots is
// compacted while running, and later records land in the new file.
func TestFlushCompactsAndKeepsAppending(t *testing.T) {
	path := t.TempDir() + "/optout.log"
	m, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := Window{Width: 24 * time.Hour, Buckets: bucketCount}
	now := time.Now()
	for i := range 2500 {
		m.Count(bg, "acme", KindDelivered, 1, w, now)
		m.mu.Lock()
		if err := m.flushLocked(); err != nil {
			t.Fatalf("flush %d: %v", i, err)
		}
		m.mu.Unlock()
	}
	if m.records > 1100 {
		t.Fatalf("%d records in the log: never compacted", m.records)
	}
	m.Bulk(bg, "acme", "fp", 5, time.Hour, w, now)
	m.mu.Lock()
	m.flushLocked()
	m.mu.Unlock()
	crash(m)
	m2, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	sums, _ := m2.Sums(bg, "acme", w, now, KindDelivered)
	st, _ := m2.Bulk(bg, "acme", "fp", 0, time.Hour, w, now)
	if sums[0] != 2500 || st.Fingerprint != 5 {
		t.Fatalf("after compaction and a crash: delivered %d fingerprint %d, want 2500 and 5", sums[0], st.Fingerprint)
	}
}
