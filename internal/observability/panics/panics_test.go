package panics

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestRecoveredIsLoggedOnceWithStackAndCounted(t *testing.T) {
	var buf bytes.Buffer
	r := New(slog.New(slog.NewJSONHandler(&buf, nil)))
	func() {
		defer func() {
			if p := recover(); p != nil {
				r.Recovered(WhereCheck, "rate_limit", p)
			}
		}()
		var s []int
		i := len(os.Args) + 1
		_ = s[i] // an index out of range: a runtime error
	}()
	r.RecoveredStack(WhereConnection, "", "boom", []byte("stack"))
	r.RecoveredStack(WhereConnection, "", "boom", []byte("stack"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["where"] != WhereCheck || first["detail"] != "rate_limit" ||
		!strings.Contains(first["panic"].(string), "index out of range") ||
		!strings.Contains(first["stack"].(string), "panics_test.go") {
		t.Errorf("log line lacks where/detail/panic/stack: %v", first)
	}
	got := r.Counts()
	want := []Count{{WhereCheck, 1}, {WhereConnection, 2}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Counts() = %v, want %v", got, want)
	}
	if r.Total() != 3 {
		t.Errorf("Total() = %d, want 3", r.Total())
	}
}

func TestNilReporterStillLogs(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	var r *Reporter
	r.Recovered(WhereHandler, "eom", "x")
	if !strings.Contains(buf.String(), "panic recovered") {
		t.Fatalf("nil reporter logged nothing: %q", buf.String())
	}
	if r.Total() != 0 || r.Counts() != nil {
		t.Fatal("nil reporter counts")
	}
}

func TestHTTPPanicIsAnswered500LoggedAndCounted(t *testing.T) {
	var buf bytes.Buffer
	r := New(slog.New(slog.NewJSONHandler(&buf, nil)))
	h := r.HTTP("admin", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		panic("handler bug")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/x", nil))
	if rec.Code != 500 {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	if r.Total() != 1 || !strings.Contains(buf.String(), "admin GET /api/x") || !strings.Contains(buf.String(), "handler bug") {
		t.Fatalf("not reported: %d %s", r.Total(), buf.String())
	}
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("ErrAbortHandler not passed on: %v", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/abort", nil))
	}()
	if r.Total() != 1 {
		t.Fatal("an abort was counted as a panic")
	}
}
