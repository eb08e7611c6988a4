package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/engine/customer"
	"github.com/aupguard/aupguard/internal/secrets"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// importEnv is an admin server on loopback whose customer directory and
// opt-out lists live in a private Redis, as on a gateway with
// store.backend redis.
type importEnv struct {
	*env
	dir *customer.Manager
	// started, when set, is sent to when an import has its slot and begins.
	started chan struct{}
	optSv   *optout.Service
	rdb     *store.Handle
}

func startImportEnv(t testing.TB) *importEnv {
	t.Helper()
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "imp:"}}, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ie := &importEnv{rdb: h, started: make(chan struct{}, 1)}
	ie.env = start(t, adminConfig, "", func(o *Options) {
		s, err := customer.OpenStore(h)
		if err != nil {
			t.Fatal(err)
		}
		ie.dir = customer.NewManager(s, o.Config, config.Options{}, nil)
		o.Directory = hookDir{ie.dir, ie}
		deps := optout.APIDeps{Store: h, Config: o.Config, Secret: secrets.Key("import-test-secret-0123456789abcd")}
		api, err := optout.NewAPI(deps)
		if err != nil {
			t.Fatal(err)
		}
		if ie.optSv, err = optout.NewService(h, o.Config, deps.Secret, nil, nil); err != nil {
			t.Fatal(err)
		}
		o.Mounts = map[string]http.Handler{"/api/optouts": api, "/api/optouts/import": api, "/api/complaints": api}
	})
	return ie
}

// hookDir is the directory, telling the test when an import begins.
type hookDir struct {
	*customer.Manager
	ie *importEnv
}

func (h hookDir) ImportFrom(ctx context.Context, src customer.ImportSource, via string) (customer.ImportResult, error) {
	select {
	case h.ie.started <- struct{}{}:
	default:
	}
	return h.Manager.ImportFrom(ctx, src, via)
}

// post sends body (size bytes; -1: chunked) with a content type and
// returns the status, the JSON answer and the headers.
func (e *env) post(t testing.TB, path, ctype string, body io.Reader, size int64, hdr ...string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %.300s", path, resp.StatusCode, b)
	}
	return resp.StatusCode, m, resp.Header
}

// pattern is a reader of n bytes: head, then fill repeated, then tail,
// generated as read (the client holds none of it).
func pattern(head string, fill byte, n int64, tail string) io.Reader {
	return io.MultiReader(strings.NewReader(head), io.LimitReader(repeatReader(fill), n), strings.NewReader(tail))
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = byte(r)
	for n := 1; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
	return len(p), nil
}

// ndjson is n customer definitions, one a line; bad (>= 0) is the index
// of one with an unknown field.
func ndjson(n, bad int, prefix string) []byte { return ndjsonPad(n, bad, prefix, 0) }

// ndjsonPad is ndjson with a name of pad characters in each definition.
func ndjsonPad(n, bad int, prefix string, pad int) []byte {
	var b bytes.Buffer
	name := strings.Repeat("n", pad)
	for i := 0; i < n; i++ {
		extra := ""
		if i == bad {
			extra = `, "colour": "blue"`
		}
		if pad > 0 {
			extra += `, "name": "` + name + `"`
		}
		fmt.Fprintf(&b, `{"id": "%s%d", "logins": ["%s%d@login"], "domains": ["%s%d.example"]%s}`+"\n", prefix, i, prefix, i, prefix, i, extra)
	}
	return b.Bytes()
}

func (ie *importEnv) version(t testing.TB) int64 {
	t.Helper()
	s, _ := customer.OpenStore(ie.rdb)
	v, err := s.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (ie *importEnv) listLen(t testing.TB, list string) int64 {
	t.Helper()
	n, err := ie.optSv.Backend.Len(context.Background(), list)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// allocDuring is the bytes the process allocated while fn ran (the server
// runs in this process): a body held in memory would show in it.
func allocDuring(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestImportBodyCapsRefusedWithNothingApplied(t *testing.T) {
	ie := startImportEnv(t)
	v0 := ie.version(t)
	tests := []struct {
		name, path, ctype string
		body              io.Reader
		size              int64
		code              int
		want              string
	}{
		{"customers JSON declared over the cap", "/api/customers/import", "application/json",
			pattern(`{"customers": [`, ' ', customer.MaxImportBody, `]}`), customer.MaxImportBody + 17, 413, "larger than"},
		{"customers NDJSON streamed over the cap", "/api/customers/import", "application/x-ndjson",
			pattern(`{"id": "n1", "logins": ["n1"], "domains": ["n1.example"]}`+"\n", ' ', customer.MaxImportBody, ""), -1, 413, "larger than"},
		{"customers YAML over its cap", "/api/customers/import", "application/yaml",
			pattern("customers:\n  - {id: y1, logins: [y1], domains: [y1.example]}\n", '#', customer.MaxYAMLImport, "\n"), -1, 413, "application/x-ndjson"},
		{"opt-outs declared over the cap", "/api/optouts/import?list=acme", "text/csv",
			pattern("address\na@x.example\n", '\n', optout.MaxImportBody, ""), optout.MaxImportBody + 20, 413, "nothing applied"},
		{"opt-outs without a length", "/api/optouts/import?list=acme", "text/csv",
			pattern("address\na@x.example\n", '\n', 100, ""), -1, 411, "Content-Length"},
		{"complaint declared over the cap", "/api/complaints", "message/rfc822",
			pattern("From: x\n\n", 'x', optout.MaxReportSize, ""), optout.MaxReportSize + 9, 413, "not recorded"},
		{"complaint streamed over the cap", "/api/complaints", "message/rfc822",
			pattern("From: x\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\n\n--b\n\n", 'x', optout.MaxReportSize, ""), -1, 413, "not recorded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, m, _ := ie.post(t, tc.path, tc.ctype, tc.body, tc.size)
			b, _ := json.Marshal(m)
			if code != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("status %d: %s; want %d with %q", code, b, tc.code, tc.want)
			}
			if v := ie.version(t); v != v0 {
				t.Fatalf("directory version %d -> %d: something was applied", v0, v)
			}
			if n := ie.listLen(t, "acme"); n != 0 {
				t.Fatalf("acme's list has %d entries: something was applied", n)
			}
		})
	}
}

func TestImportLongLineBoundedAndNamed(t *testing.T) {
	ie := startImportEnv(t)
	const long = 30 << 20
	t.Run("opt-out CSV line of 30 MiB", func(t *testing.T) {
		head := "address,note\na@x.example,one\n"
		tail := "\nb@x.example,two\n"
		var code int
		var m map[string]any
		alloc := allocDuring(func() {
			code, m, _ = ie.post(t, "/api/optouts/import?list=acme", "text/csv", pattern(head, 'x', long, tail), int64(len(head)+long+len(tail)))
		})
		b, _ := json.Marshal(m)
		if code != 200 || m["added"] != 2.0 || m["bad"] != 1.0 || !strings.Contains(string(b), `{"error":"line longer than 65536 bytes: not imported","line":3}`) {
			t.Fatalf("status %d: %s", code, b)
		}
		t.Logf("30 MiB line: %d bytes allocated in all", alloc)
		if alloc > 4<<20 {
			t.Fatalf("the import allocated %d bytes for a 30 MiB line: not bounded", alloc)
		}
	})
	// A customer import is at most 16 MiB: its lines are 12 MiB.
	const longEntry = 12 << 20
	t.Run("customer NDJSON line of 12 MiB", func(t *testing.T) {
		v0 := ie.version(t)
		head := string(ndjson(2, -1, "l"))
		var code int
		var m map[string]any
		alloc := allocDuring(func() {
			code, m, _ = ie.post(t, "/api/customers/import", "application/x-ndjson", pattern(head+`{"id": "big", "name": "`, 'x', longEntry, "\"}\n"), -1)
		})
		b, _ := json.Marshal(m)
		if code != 400 || !strings.Contains(string(b), `customers[2] (line 3): definition larger than 65536 bytes`) || !strings.Contains(string(b), "nothing applied") {
			t.Fatalf("status %d: %s", code, b)
		}
		if v := ie.version(t); v != v0 {
			t.Fatal("something was applied")
		}
		if alloc > 4<<20 {
			t.Fatalf("the import allocated %d bytes for a 12 MiB line: not bounded", alloc)
		}
	})
	t.Run("customer JSON element of 12 MiB", func(t *testing.T) {
		v0 := ie.version(t)
		var code int
		var m map[string]any
		alloc := allocDuring(func() {
			code, m, _ = ie.post(t, "/api/customers/import", "application/json", pattern(`[{"id": "j1", "logins": ["j1"], "domains": ["j1.example"]}, {"id": "big", "name": "`, 'x', longEntry, `"}]`), -1)
		})
		b, _ := json.Marshal(m)
		if code != 400 || !strings.Contains(string(b), `customers[1]: definition larger than 65536 bytes`) {
			t.Fatalf("status %d: %s", code, b)
		}
		if v := ie.version(t); v != v0 {
			t.Fatal("something was applied")
		}
		if alloc > 4<<20 {
			t.Fatalf("the import allocated %d bytes for a 12 MiB element: not bounded", alloc)
		}
	})
}

func TestImportMalformedEntryInTheMiddle(t *testing.T) {
	ie := startImportEnv(t)
	t.Run("customers: nothing applied, the entry named", func(t *testing.T) {
		v0 := ie.version(t)
		body := ndjson(1100, 1050, "m")
		code, m, _ := ie.post(t, "/api/customers/import", "application/x-ndjson", bytes.NewReader(body), int64(len(body)))
		b, _ := json.Marshal(m)
		if code != 400 || !strings.Contains(string(b), `"entry":1050`) || !strings.Contains(string(b), `unknown field`) || !strings.Contains(string(b), "line 1051") {
			t.Fatalf("status %d: %.600s", code, b)
		}
		if v := ie.version(t); v != v0 {
			t.Fatalf("version %d -> %d: a refused import wrote something", v0, v)
		}
		if _, ok := ie.dir.Get("m0"); ok {
			t.Fatal("m0 applied from a refused import")
		}
	})
	t.Run("customers: a conflict with the directory, nothing applied", func(t *testing.T) {
		body := `{"customers": [{"id": "c1", "logins": ["c1"], "domains": ["c1.example"]}, {"id": "c2", "networks": ["192.0.2.0/24"], "domains": ["c2.example"]}]}`
		code, m, _ := ie.post(t, "/api/customers/import", "application/json", strings.NewReader(body), int64(len(body)))
		b, _ := json.Marshal(m)
		if code != 400 || !strings.Contains(string(b), `"entry":1`) || !strings.Contains(string(b), `already customer \"acme\"`) {
			t.Fatalf("status %d: %s", code, b)
		}
		if _, ok := ie.dir.Get("c1"); ok {
			t.Fatal("c1 applied from a refused import")
		}
	})
	t.Run("customers: the same list without the fault, all applied", func(t *testing.T) {
		v0 := ie.version(t)
		body := ndjson(1100, -1, "m")
		code, m, _ := ie.post(t, "/api/customers/import", "application/x-ndjson", bytes.NewReader(body), int64(len(body)))
		if code != 200 || m["imported"] != 1100.0 || m["added"] != 1100.0 || m["first_version"] != float64(v0+1) || m["last_version"] != float64(v0+1100) {
			t.Fatalf("status %d: %v", code, m)
		}
		if v := ie.version(t); v != v0+1100 {
			t.Fatalf("version %d, want %d", v, v0+1100)
		}
		if _, ok := ie.dir.Get("m1099"); !ok {
			t.Fatal("m1099 not in the directory")
		}
		// Imported again: every one replaced.
		code, m, _ = ie.post(t, "/api/customers/import", "application/x-ndjson", bytes.NewReader(body), int64(len(body)))
		if code != 200 || m["replaced"] != 1100.0 {
			t.Fatalf("again: %d %v", code, m)
		}
	})
	t.Run("opt-outs: each line's result", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("address,note\n")
		for i := 0; i < 2000; i++ {
			switch i {
			case 1000:
				b.WriteString("not an address,bad\n")
			case 1001:
				b.WriteString("a\"b@x.example,bare quote\n")
			default:
				fmt.Fprintf(&b, "u%d@x.example,n\n", i)
			}
		}
		before := ie.listLen(t, "beta")
		code, m, _ := ie.post(t, "/api/optouts/import?list=beta", "text/csv", strings.NewReader(b.String()), int64(b.Len()))
		js, _ := json.Marshal(m)
		if code != 200 || m["lines"] != 2000.0 || m["added"] != 1998.0 || m["bad"] != 2.0 ||
			!strings.Contains(string(js), `"line":1002}`) || !strings.Contains(string(js), `"line":1003}`) {
			t.Fatalf("status %d: %.600s", code, js)
		}
		if n := ie.listLen(t, "beta"); n-before != 1998 {
			t.Fatalf("list grew by %d, the answer says 1998", n-before)
		}
	})
}

// blockingBody is a request body that waits for the test's release.
type blockingBody struct {
	release chan struct{}
	rest    io.Reader
}

func (b *blockingBody) Read(p []byte) (int, error) {
	<-b.release
	return b.rest.Read(p)
}

func TestImportFloodBounded(t *testing.T) {
	ie := startImportEnv(t)
	v0 := ie.version(t)
	hold := &blockingBody{release: make(chan struct{}), rest: bytes.NewReader(ndjson(11, -1, "f"))}
	held := make(chan int, 1)
	go func() {
		// Expect: 100-continue sends the headers at once: the handler
		// takes the slot and waits for the body the test holds back.
		code, _, _ := ie.post(t, "/api/customers/import", "application/x-ndjson", hold, -1, "Expect", "100-continue")
		held <- code
	}()
	<-ie.started // the first import holds the slot
	const flood = 30
	var wg sync.WaitGroup
	codes := make(chan string, flood)
	for i := 0; i < flood; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path, ctype, body := "/api/customers/import", "application/x-ndjson", string(ndjson(50, -1, "x"+strconv.Itoa(i)+"-"))
			if i%2 == 1 {
				path, ctype, body = "/api/optouts/import?list=acme", "text/csv", "address\nflood"+strconv.Itoa(i)+"@x.example\n"
			}
			code, _, h := ie.post(t, path, ctype, strings.NewReader(body), int64(len(body)))
			codes <- fmt.Sprintf("%d retry-after=%s", code, h.Get("Retry-After"))
		}(i)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != "429 retry-after=5" {
			t.Errorf("a concurrent import got %s, want 429 with Retry-After", c)
		}
	}
	if v := ie.version(t); v != v0 {
		t.Fatalf("version moved during the flood: %d -> %d", v0, v)
	}
	if n := ie.listLen(t, "acme"); n != 0 {
		t.Fatalf("refused opt-out imports applied %d entries", n)
	}
	close(hold.release)
	if code := <-held; code != 200 {
		t.Fatalf("the import holding the slot: %d", code)
	}
	if v := ie.version(t); v != v0+11 {
		t.Fatalf("version %d, want %d (the one import)", v, v0+11)
	}
	// The slot is free again.
	body := ndjson(1, -1, "after")
	if code, m, _ := ie.post(t, "/api/customers/import", "application/x-ndjson", bytes.NewReader(body), int64(len(body))); code != 200 {
		t.Fatalf("after the flood: %d %v", code, m)
	}
}

func TestDirectoryListingPaged(t *testing.T) {
	ie := startImportEnv(t)
	body := ndjson(1100, -1, "p")
	if code, m, _ := ie.post(t, "/api/customers/import", "application/x-ndjson", bytes.NewReader(body), int64(len(body))); code != 200 {
		t.Fatalf("import: %d %v", code, m)
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		code, m := ie.send(t, "GET", "/api/directory?limit=500&cursor="+cursor, "")
		if code != 200 {
			t.Fatalf("page %d: %d %v", pages, code, m)
		}
		pages++
		for _, c := range m["customers"].([]any) {
			id := c.(map[string]any)["customer"].(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("%s listed twice", id)
			}
			seen[id] = true
		}
		if m["total"] != 1102.0 {
			t.Fatalf("total %v", m["total"])
		}
		next, ok := m["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	if pages != 3 || len(seen) != 1102 || !seen["acme"] || !seen["p1099"] {
		t.Fatalf("%d pages, %d customers", pages, len(seen))
	}
	if code, m := ie.send(t, "GET", "/api/directory", ""); code != 200 || len(m["customers"].([]any)) != defaultPage {
		t.Fatalf("default page: %d, %d customers", code, len(m["customers"].([]any)))
	}
	for _, q := range []string{"limit=1001", "limit=0", "cursor=-1", "cursor=x"} {
		if code, _ := ie.send(t, "GET", "/api/directory?"+q, ""); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	if code, m := ie.send(t, "GET", "/api/customers?limit=1", ""); code != 200 || len(m["customers"].([]any)) != 1 || m["next_cursor"] != "1" {
		t.Fatalf("/api/customers?limit=1: %d %v", code, m)
	}
	code, page, _ := ie.do(t, "GET", "/customers?cursor=500", "Bearer "+testToken)
	if code != 200 || !strings.Contains(page, "1102 customers, 501 to 1000 shown") || !strings.Contains(page, `href="/customers?cursor=1000"`) {
		t.Fatalf("console page: %d %.500s", code, page)
	}
}

// BenchmarkCustomerImport imports AUPG_IMPORT_CUSTOMERS customers (default
// 2000, so that the suite's -benchtime=1x run stays short; each with a name
// of AUPG_IMPORT_PAD characters, default none) as NDJSON
// through the admin API into a directory in a private Redis, and reports
// the time and the process's peak RSS during the import (VmHWM, reset
// first). The figures in docs/capacity.md come from:
//
//	AUPG_IMPORT_CUSTOMERS=100000 go test -run '^$' -bench CustomerImport -benchtime 1x ./internal/observability/admin/
func BenchmarkCustomerImport(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("AUPG_IMPORT_CUSTOMERS")); err == nil && v > 0 {
		n = v
	}
	pad, _ := strconv.Atoi(os.Getenv("AUPG_IMPORT_PAD"))
	// The body is generated as it is sent: the process holds the server's
	// memory, not the client's copy of the input.
	size, _ := io.Copy(io.Discard, &genReader{n: n, pad: pad})
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ie := startImportEnv(b)
		runtime.GC()
		resetPeakRSS()
		rss0 := peakRSS()
		b.StartTimer()
		start := time.Now()
		code, m, _ := ie.post(b, "/api/customers/import", "application/x-ndjson", &genReader{n: n, pad: pad}, size)
		d := time.Since(start)
		if code != 200 || m["imported"] != float64(n) {
			b.Fatalf("import: %d %v", code, m)
		}
		b.StopTimer()
		lstart := time.Now()
		if code, _ := ie.send(b, "GET", "/api/directory?limit=1000&cursor="+strconv.Itoa(n/2), ""); code != 200 {
			b.Fatalf("listing: %d", code)
		}
		ld := time.Since(lstart)
		peak := peakRSS()
		b.ReportMetric(d.Seconds(), "s/import")
		b.ReportMetric(float64(peak)/(1<<20), "peakRSS-MiB")
		b.Logf("%d customers (%d bytes NDJSON) imported in %s; peak RSS %d MiB (%d MiB before); a page of 1000 from the middle in %s",
			n, size, d.Round(time.Millisecond), peak>>20, rss0>>20, ld.Round(time.Millisecond))
	}
}

// genReader generates ndjsonPad(n, -1, "bench", pad) as it is read.
type genReader struct {
	n, pad, i int
	buf       []byte
}

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i == g.n {
			return 0, io.EOF
		}
		g.buf = ndjsonPad(1, -1, "bench"+strconv.Itoa(g.i)+"-", g.pad)
		g.i++
	}
	k := copy(p, g.buf)
	g.buf = g.buf[k:]
	return k, nil
}

// resetPeakRSS resets the process's VmHWM (Linux: clear_refs 5).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process's VmHWM in bytes (0 when unknown).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// TestImportDirectoryRulesForced: the streamed import keeps the directory
// rules of every write. A list with an entry claiming 0.0.0.0/0 is refused
// naming the entry and field, nothing applied; with ?force=1 all of it is
// applied, the answer lists the rules waived per customer (the entry's
// own bound and the overlap with the directory's acme), the stored
// definitions say force: true and the change log keeps the waivers.
func TestImportDirectoryRulesForced(t *testing.T) {
	ie := startImportEnv(t)
	body := `{"customers": [` +
		`{"id": "f1", "logins": ["f1"], "domains": ["f1.example"]},` +
		`{"id": "f2", "networks": ["0.0.0.0/0"], "domains": ["f2.example"]},` +
		`{"id": "f3", "networks": ["192.0.2.128/25"], "domains": ["f3.example"]}]}`
	v0 := ie.version(t)
	code, m, _ := ie.post(t, "/api/customers/import", "application/json", strings.NewReader(body), int64(len(body)))
	b, _ := json.Marshal(m)
	if code != 400 || !strings.Contains(string(b), `"entry":1`) || !strings.Contains(string(b), `"field":"networks[0]"`) ||
		!strings.Contains(string(b), "broader than directory.max_network_prefix.ipv4") || !strings.Contains(string(b), `"entry":2`) {
		t.Fatalf("unforced: %d %s; want 400 naming entries 1 and 2", code, b)
	}
	if v := ie.version(t); v != v0 {
		t.Fatalf("version %d -> %d: a refused import wrote something", v0, v)
	}
	for _, id := range []string{"f1", "f2", "f3"} {
		if _, ok := ie.dir.Get(id); ok {
			t.Fatalf("%s applied from a refused import", id)
		}
	}

	code, m, _ = ie.post(t, "/api/customers/import?force=1", "application/json", strings.NewReader(body), int64(len(body)))
	b, _ = json.Marshal(m)
	if code != 200 || m["imported"] != 3.0 {
		t.Fatalf("forced: %d %s", code, b)
	}
	var res customer.ImportResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	waived := map[string]string{}
	for _, f := range res.Forced {
		waived[f.Customer] = strings.Join(f.Forced, "\n")
	}
	if _, ok := waived["f1"]; ok || len(res.Forced) != 2 ||
		!strings.Contains(waived["f2"], "networks[0]: forced: network 0.0.0.0/0 is broader than directory.max_network_prefix.ipv4") ||
		!strings.Contains(waived["f3"], `networks[0]: forced: network 192.0.2.128/25 is inside customer "acme"'s network 192.0.2.0/24`) {
		t.Fatalf("forced rules %+v; want f2's bound and f3's overlap with acme, nothing for f1", res.Forced)
	}
	if v := ie.version(t); v != v0+3 {
		t.Fatalf("version %d, want %d", v, v0+3)
	}
	for _, id := range []string{"f1", "f2", "f3"} {
		e, ok := ie.dir.Get(id)
		if !ok || !e.Customer.Force {
			t.Fatalf("%s: in directory %v, force %v; want stored with force: true", id, ok, e.Customer.Force)
		}
	}
	code, m = ie.send(t, "GET", "/api/customers/f2/changes", "")
	b, _ = json.Marshal(m)
	if code != 200 || !strings.Contains(string(b), `"forced":["networks[0]: forced: network 0.0.0.0/0 is broader`) {
		t.Fatalf("change log: %d %s", code, b)
	}
	if code, m, _ := ie.post(t, "/api/customers/import?force=maybe", "application/json", strings.NewReader(body), int64(len(body))); code != 400 {
		t.Fatalf("force=maybe: %d %v, want 400", code, m)
	}
}
