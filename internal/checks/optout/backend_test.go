package optout

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// backends returns a fresh backend of each kind: memory with a log file,
// and Redis (skipped without redis-server, failed under CI=true).
func backends(t *testing.T) map[string]func(t *testing.T) (Backend, *store.Handle) {
	return map[string]func(t *testing.T) (Backend, *store.Handle){
		"memory": func(t *testing.T) (Backend, *store.Handle) {
			h, err := store.Open(config.StoreConfig{Backend: "memory", Path: t.TempDir()}, clock.NewFake(t0))
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(h)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.(*memory).Close() })
			return b, h
		},
		"redis": func(t *testing.T) (Backend, *store.Handle) {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 2 * time.Second,
				Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, clock.NewFake(t0))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			b, err := Open(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LoadScripts(context.Background(), b.(*redisBackend).scripts()...); err != nil {
				t.Fatal(err)
			}
			return b, h
		},
	}
}

func entry(list, hash, src string) Entry {
	return Entry{List: list, Hash: hash, Source: src, Time: t0}
}

const (
	hA = "0123456789abcdef0123456789abcdef"
	hB = "fedcba9876543210fedcba9876543210"
	hC = "00000000000000000000000000000000"
)

func TestBackendLists(t *testing.T) {
	ctx := context.Background()
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b, _ := mk(t)
			n, err := b.Add(ctx, []Entry{entry("c1", hA, SourceAPI), entry("c1", hB, SourceCLI), entry(GlobalList, hC, SourceImport), entry("c1", hA, SourceImport)})
			if err != nil || n != 3 {
				t.Fatalf("Add = %d, %v; want 3 new", n, err)
			}
			lookups := []struct {
				name, customer, hash, want string
			}{
				{"own list", "c1", hA, "c1"},
				{"global list", "c1", hC, GlobalList},
				{"global for others", "c2", hC, GlobalList},
				{"other customer's list", "c2", hA, ""},
				{"absent", "c1", "11111111111111111111111111111111", ""},
			}
			for _, l := range lookups {
				t.Run(l.name, func(t *testing.T) {
					got, err := b.Lookup(ctx, l.customer, l.hash)
					if err != nil || got != l.want {
						t.Fatalf("Lookup(%s, %s) = %q, %v; want %q", l.customer, l.hash, got, err, l.want)
					}
				})
			}
			e, ok, err := b.Get(ctx, "c1", hA)
			if err != nil || !ok || e.Source != SourceAPI || !e.Time.Equal(t0) {
				t.Fatalf("Get = %+v %v %v; want the first entry (source api)", e, ok, err)
			}
			if n, _ := b.Len(ctx, "c1"); n != 2 {
				t.Fatalf("Len = %d, want 2", n)
			}
			var seen []string
			if err := b.Scan(ctx, "c1", func(e Entry) error { seen = append(seen, e.Hash); return nil }); err != nil || len(seen) != 2 {
				t.Fatalf("Scan = %v, %v", seen, err)
			}
			if ok, err := b.Remove(ctx, "c1", hA); err != nil || !ok {
				t.Fatalf("Remove = %v, %v", ok, err)
			}
			if ok, _ := b.Remove(ctx, "c1", hA); ok {
				t.Fatal("second Remove reported a removal")
			}
			if got, _ := b.Lookup(ctx, "c1", hA); got != "" {
				t.Fatalf("removed address still suppressed by %q", got)
			}
		})
	}
}

func TestBackendEscalationAndCounters(t *testing.T) {
	ctx := context.Background()
	esc := NewWindow(24 * time.Hour)
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b, _ := mk(t)
			steps := []struct {
				at         time.Duration
				wantHits   int64
				wantRaised bool
			}{
				{0, 1, false},
				{time.Hour, 2, false},
				{2 * time.Hour, 3, true},
				{3 * time.Hour, 4, false}, // already flagged
			}
			for i, s := range steps {
				hits, raised, err := b.Hit(ctx, "c1", esc, 3, t0.Add(s.at))
				if err != nil || hits != s.wantHits || raised != s.wantRaised {
					t.Fatalf("hit %d = %d, %v, %v; want %d, %v", i, hits, raised, err, s.wantHits, s.wantRaised)
				}
			}
			f, err := b.GetFlag(ctx, "c1")
			if err != nil || f == nil || f.Reason != "opted_out_sends" || f.Hits != 3 || !f.Since.Equal(t0.Add(2*time.Hour)) {
				t.Fatalf("flag = %+v, %v", f, err)
			}
			if f, _ := b.GetFlag(ctx, "c2"); f != nil {
				t.Fatalf("c2 flagged: %+v", f)
			}
			if ok, err := b.ClearFlag(ctx, "c1"); err != nil || !ok {
				t.Fatalf("ClearFlag = %v, %v", ok, err)
			}
			if f, _ := b.GetFlag(ctx, "c1"); f != nil {
				t.Fatalf("flag after clear: %+v", f)
			}
			// Clearing also resets the count: one more hit does not re-flag.
			if hits, raised, _ := b.Hit(ctx, "c1", esc, 3, t0.Add(4*time.Hour)); hits != 1 || raised {
				t.Fatalf("after clear: hits %d raised %v", hits, raised)
			}
			// Old hits leave the window.
			if hits, _, _ := b.Hit(ctx, "c1", esc, 3, t0.Add(30*time.Hour)); hits != 1 {
				t.Fatalf("hits after the window = %d, want 1", hits)
			}

			rate := NewWindow(7 * 24 * time.Hour)
			if _, err := b.Count(ctx, "c1", KindDelivered, 1000, rate, t0); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Count(ctx, "c1", KindComplaint, 2, rate, t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			sums, err := b.Sums(ctx, "c1", rate, t0.Add(2*time.Hour), KindDelivered, KindComplaint)
			if err != nil || sums[0] != 1000 || sums[1] != 2 {
				t.Fatalf("Sums = %v, %v", sums, err)
			}

			// Bulk: fingerprint counts add up within the window, start again after.
			if err := b.SetFlag(ctx, "c1", Flag{Reason: "manual", Since: t0, Hits: 0}); err != nil {
				t.Fatal(err)
			}
			fpw := 24 * time.Hour
			st, err := b.Bulk(ctx, "c1", "fp1", 60, fpw, rate, t0)
			if err != nil || st.Fingerprint != 60 || st.Flag == nil || st.Flag.Reason != "manual" || st.Delivered != 1000 || st.Complaints != 2 {
				t.Fatalf("Bulk = %+v, %v", st, err)
			}
			st, _ = b.Bulk(ctx, "c1", "fp1", 50, fpw, rate, t0.Add(time.Hour))
			if st.Fingerprint != 110 {
				t.Fatalf("fingerprint count = %d, want 110", st.Fingerprint)
			}
			st, _ = b.Bulk(ctx, "c1", "", 50, fpw, rate, t0.Add(time.Hour))
			if st.Fingerprint != 0 {
				t.Fatalf("no fingerprint counted %d", st.Fingerprint)
			}
			st, _ = b.Bulk(ctx, "c2", "fp1", 5, fpw, rate, t0.Add(time.Hour))
			if st.Fingerprint != 5 || st.Flag != nil || st.Delivered != 0 {
				t.Fatalf("other customer shares state: %+v", st)
			}
			sums, _ = b.Sums(ctx, "c1", rate, t0.Add(8*24*time.Hour), KindDelivered, KindComplaint)
			if sums[0] != 0 || sums[1] != 0 {
				t.Fatalf("Sums after the window = %v, want zeros", sums)
			}
		})
	}
}

// TestRedisFingerprintExpiry checks the fingerprint window on Redis, where
// it is a key TTL (real time), with a short window.
func TestRedisFingerprintExpiry(t *testing.T) {
	b, _ := backends(t)["redis"](t)
	ctx := context.Background()
	rate := NewWindow(time.Hour)
	if st, err := b.Bulk(ctx, "c1", "fpx", 10, 200*time.Millisecond, rate, t0); err != nil || st.Fingerprint != 10 {
		t.Fatalf("Bulk = %+v, %v", st, err)
	}
	time.Sleep(400 * time.Millisecond)
	if st, _ := b.Bulk(ctx, "c1", "fpx", 3, 200*time.Millisecond, rate, t0); st.Fingerprint != 3 {
		t.Fatalf("after expiry fingerprint = %d, want 3", st.Fingerprint)
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 300 * time.Millisecond,
		Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:", DialTimeout: 300 * time.Millisecond}}, clock.NewFake(t0))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, _ := Open(h)
	r.Kill()
	_, err = b.Lookup(context.Background(), "c1", hA)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Lookup with Redis down: %v, want ErrUnavailable", err)
	}
}

func TestMemoryLockedByAnotherOpener(t *testing.T) {
	dir := t.TempDir()
	m, err := openMemory(filepath.Join(dir, "optout.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := openMemory(filepath.Join(dir, "optout.log"), nil); err == nil {
		t.Fatal("second opener of the same log was allowed")
	}
}
