package jsonapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteAndError(t *testing.T) {
	tests := []struct {
		name     string
		write    func(w http.ResponseWriter)
		wantCode int
		wantKey  string
		wantVal  string
	}{
		{"value", func(w http.ResponseWriter) { Write(w, http.StatusOK, map[string]string{"ok": "yes"}) }, 200, "ok", "yes"},
		{"error", func(w http.ResponseWriter) { Error(w, http.StatusServiceUnavailable, "store unavailable") }, 503, "error", "store unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.write(rec)
			if rec.Code != tc.wantCode {
				t.Errorf("code = %d, want %d", rec.Code, tc.wantCode)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if got[tc.wantKey] != tc.wantVal {
				t.Errorf("body[%q] = %q, want %q", tc.wantKey, got[tc.wantKey], tc.wantVal)
			}
		})
	}
}
