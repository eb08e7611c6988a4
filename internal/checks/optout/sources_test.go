package optout

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// TestSourcesThroughEndpoints records opt-outs through every way in (the
// signed one-click link, the admin API, a CSV import, an ARF complaint)
// and reads the per-source counts back from the store, on both backends.
func TestSourcesThroughEndpoints(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			deps := APIDeps{Store: svc.h, Config: cfg, Secret: testKey, Clock: clk}
			api, err := NewAPI(deps)
			if err != nil {
				t.Fatal(err)
			}
			unsub, err := NewUnsubscribeHandler(deps)
			if err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name, method, url, ctype, body string
				h                              func() (int, string)
				want                           int
			}{
				{name: "unsubscribe jane", want: 200, h: func() (int, string) {
					return do(t, unsub, "POST", "/u/"+NewToken(testKey, "acme", "jane@example.com", t0), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
				}},
				{name: "unsubscribe jane again (not new)", want: 200, h: func() (int, string) {
					return do(t, unsub, "POST", "/u/"+NewToken(testKey, "acme", "jane@example.com", t0), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
				}},
				{name: "unsubscribe joe", want: 200, h: func() (int, string) {
					return do(t, unsub, "POST", "/u/"+NewToken(testKey, "acme", "joe@example.com", t0), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
				}},
				{name: "api", method: "POST", url: "/api/optouts", ctype: "application/json", body: `{"list":"acme","address":"api@example.com"}`, want: 201},
				{name: "api on another list", method: "POST", url: "/api/optouts", ctype: "application/json", body: `{"list":"beta","address":"api@example.com"}`, want: 201},
				{name: "import", method: "POST", url: "/api/optouts/import?list=acme", ctype: "text/csv", body: "address\na@x.example\nb@x.example\nc@x.example\njane@example.com\n", want: 200},
				{name: "complaint", method: "POST", url: "/api/complaints", ctype: "message/rfc822", body: string(fixture(t, "arf/yahoo_full.eml")), want: 200},
			}
			for _, s := range steps {
				code, body := 0, ""
				if s.h != nil {
					code, body = s.h()
				} else {
					code, body = do(t, api, s.method, s.url, s.ctype, s.body)
				}
				if code != s.want {
					t.Fatalf("%s: %d %s", s.name, code, body)
				}
			}
			want := map[string]int64{SourceUnsubscribe: 2, SourceAPI: 1, SourceImport: 3, SourceComplaint: 1}
			st, err := svc.Status(bg, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.Sources, want) || st.OptOutsRecorded() != 7 {
				t.Fatalf("acme sources = %v (total %d), want %v", st.Sources, st.OptOutsRecorded(), want)
			}
			if st, _ := svc.Status(bg, "beta"); !reflect.DeepEqual(st.Sources, map[string]int64{SourceAPI: 1}) {
				t.Fatalf("beta sources = %v", st.Sources)
			}
			// A removal does not un-record the opt-out: the count is of
			// opt-outs recorded, not of the list's size.
			if code, body := do(t, api, "DELETE", "/api/optouts?list=acme&address=a@x.example", "", ""); code != 200 {
				t.Fatalf("remove: %d %s", code, body)
			}
			if st, _ := svc.Status(bg, "acme"); st.Sources[SourceImport] != 3 || st.ListSize != 6 {
				t.Fatalf("after a removal: sources %v, list size %d", st.Sources, st.ListSize)
			}
		})
	}
}

// TestMemorySourcesSurviveRestartAndCompaction reopens the memory
// backend's log, plain and compacted, and finds the same counts.
func TestMemorySourcesSurviveRestartAndCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "optout.log")
	m, err := openMemory(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Add(ctx, []Entry{entry("acme", "h1", SourceUnsubscribe), entry("acme", "h2", SourceImport), entry("acme", "h3", SourceImport), entry("acme", "h1", SourceAPI)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Remove(ctx, "acme", "h2"); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{SourceUnsubscribe: 1, SourceImport: 2}
	check := func(m *memory, when string) {
		t.Helper()
		got, err := m.Sources(ctx, "acme")
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: sources %v (%v), want %v", when, got, err, want)
		}
	}
	check(m, "live")
	m.Close()
	if m, err = openMemory(path, nil); err != nil {
		t.Fatal(err)
	}
	check(m, "replayed")
	m.mu.Lock()
	err = m.compact()
	m.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if m, err = openMemory(path, nil); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	check(m, "compacted and replayed")
}

// TestTrend counts delivered mail and complaints in several buckets of the
// complaint window and reads the trend back, on both backends.
func TestTrend(t *testing.T) {
	cfg := testConfig(t, "")
	clk := clock.NewFake(t0)
	oc, err := ConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWindow(oc.Complaints.Window)
	size := time.Duration(w.size()) * time.Millisecond
	for name, mk := range svcKinds(t, cfg, clk) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			if pts, err := Trend(bg, svc.h, cfg, "acme"); err != nil || len(pts) != 0 {
				t.Fatalf("empty trend = %v, %v", pts, err)
			}
			// Older than the window: not part of the trend.
			count := func(kind string, n int64, ago time.Duration) {
				if _, err := svc.Backend.Count(bg, "acme", kind, n, w, t0.Add(-ago)); err != nil {
					t.Fatal(err)
				}
			}
			count(KindDelivered, 99, oc.Complaints.Window+2*size)
			count(KindDelivered, 1000, 3*size)
			count(KindComplaint, 2, 3*size)
			count(KindDelivered, 500, size)
			count(KindComplaint, 1, 0)
			pts, err := Trend(bg, svc.h, cfg, "acme")
			if err != nil {
				t.Fatal(err)
			}
			type got struct{ c, d int64 }
			var g []got
			for _, p := range pts {
				g = append(g, got{p.Complaints, p.Delivered})
			}
			if want := []got{{2, 1000}, {0, 0}, {0, 500}, {1, 0}}; !reflect.DeepEqual(g, want) {
				t.Fatalf("trend %+v, want %+v", g, want)
			}
			if pts[0].Rate != 0.002 || !pts[3].Start.Equal(time.UnixMilli(w.index(t0)*w.size()).UTC()) || pts[1].Start.Sub(pts[0].Start) != size {
				t.Fatalf("trend points %+v", pts)
			}
			if _, err := Trend(bg, svc.h, cfg, "nosuch"); err == nil {
				t.Fatal("trend of an unknown customer")
			}
		})
	}
}
