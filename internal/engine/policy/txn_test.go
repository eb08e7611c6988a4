package policy

import (
	"fmt"
	"testing"
)

func TestRemoveHeaders(t *testing.T) {
	received := []Header{
		{Name: "X-Stamp", Value: " old"},
		{Name: "From", Value: " a@example.org"},
		{Name: "x-stamp ", Value: " keep"},
		{Name: "Subject", Value: " hi"},
		{Name: "X-STAMP", Value: " old"},
	}
	tests := []struct {
		name      string
		field     string
		drop      string
		wantN     int
		wantNames string
		wantIdx   string
	}{
		{"first and last of three", "X-Stamp", " old", 2, "[From x-stamp  Subject]", "[1 3]"},
		{"none matches", "X-Other", " old", 0, "[X-Stamp From x-stamp  Subject X-STAMP]", "[]"},
		{"matches but none dropped", "X-Stamp", " nothing", 0, "[X-Stamp From x-stamp  Subject X-STAMP]", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held := append([]Header(nil), received...)
			tx := &Txn{Headers: held}
			n := tx.RemoveHeaders(tt.field, func(v string) bool { return v == tt.drop })
			var names []string
			for _, h := range tx.Headers {
				names = append(names, h.Name)
			}
			var idx []int
			for _, r := range tx.RemovedHeaders() {
				idx = append(idx, r.Index)
			}
			if n != tt.wantN || fmt.Sprint(names) != tt.wantNames || fmt.Sprint(idx) != tt.wantIdx {
				t.Fatalf("n=%d headers %v removed at %v; want %d %s %s", n, names, idx, tt.wantN, tt.wantNames, tt.wantIdx)
			}
			// Whoever still holds the received array sees it unchanged.
			for i := range received {
				if held[i] != received[i] {
					t.Fatalf("received array written to at %d: %v", i, held[i])
				}
			}
		})
	}
}
