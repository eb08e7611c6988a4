package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// feed runs the summary over a go test -json stream given as lines.
func feed(t *testing.T, lines ...string) (string, bool) {
	t.Helper()
	var out strings.Builder
	s := newSummary(&out)
	for _, l := range lines {
		var e event
		if err := jsonUnmarshal(l, &e); err != nil {
			t.Fatalf("bad fixture line %q: %v", l, err)
		}
		s.add(e)
	}
	ok := s.finish(2)
	return out.String(), ok
}

func TestSummary(t *testing.T) {
	tests := []struct {
		name    string
		lines   []string
		ok      bool
		want    []string
		notWant []string
	}{
		{
			name: "passing package prints its closing line and the slowest tests",
			lines: []string{
				`{"Action":"start","Package":"p"}`,
				`{"Action":"run","Package":"p","Test":"TestA"}`,
				`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
				`{"Action":"pass","Package":"p","Test":"TestA","Elapsed":3.5}`,
				`{"Action":"pass","Package":"p","Test":"TestB","Elapsed":0.5}`,
				`{"Action":"pass","Package":"p","Test":"TestC","Elapsed":1.5}`,
				`{"Action":"pass","Package":"p","Test":"TestA/sub","Elapsed":9}`,
				`{"Action":"output","Package":"p","Output":"PASS\n"}`,
				`{"Action":"output","Package":"p","Output":"ok  \tp\t4.0s\n"}`,
				`{"Action":"pass","Package":"p","Elapsed":4}`,
			},
			ok:      true,
			want:    []string{"ok  \tp\t4.0s\n", "slowest 2 tests:", "3.50s  p TestA\n", "1.50s  p TestC\n"},
			notWant: []string{"=== RUN", "TestB", "TestA/sub", "PASS\n"},
		},
		{
			name: "a failed test prints its output and fails the run",
			lines: []string{
				`{"Action":"run","Package":"p","Test":"TestX"}`,
				`{"Action":"output","Package":"p","Test":"TestX","Output":"    x_test.go:9: want 1, got 2\n"}`,
				`{"Action":"fail","Package":"p","Test":"TestX","Elapsed":0.1}`,
				`{"Action":"output","Package":"p","Output":"FAIL\tp\t0.2s\n"}`,
				`{"Action":"fail","Package":"p","Elapsed":0.2}`,
			},
			ok:   false,
			want: []string{"x_test.go:9: want 1, got 2", "FAIL\tp\t0.2s", "failed tests:\n  p TestX"},
		},
		{
			name: "a package that failed outside a test (panic, build) prints its output",
			lines: []string{
				`{"Action":"start","Package":"q"}`,
				`{"Action":"output","Package":"q","Output":"panic: boom\n"}`,
				`{"Action":"output","Package":"q","Output":"FAIL\tq\t0.1s\n"}`,
				`{"Action":"fail","Package":"q","Elapsed":0.1}`,
			},
			ok:   false,
			want: []string{"panic: boom", "FAIL\tq\t0.1s"},
		},
		{
			name: "a stream that ends before a package closes fails",
			lines: []string{
				`{"Action":"start","Package":"r"}`,
				`{"Action":"run","Package":"r","Test":"TestY"}`,
			},
			ok:   false,
			want: []string{"FAIL\tr\t(no result"},
		},
		{
			name: "a package without tests prints go test's line",
			lines: []string{
				`{"Action":"start","Package":"s"}`,
				`{"Action":"output","Package":"s","Output":"?   \ts\t[no test files]\n"}`,
				`{"Action":"skip","Package":"s","Elapsed":0}`,
			},
			ok:   true,
			want: []string{"?   \ts\t[no test files]\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := feed(t, tt.lines...)
			if ok != tt.ok {
				t.Errorf("ok = %v, want %v; output:\n%s", ok, tt.ok, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

func jsonUnmarshal(s string, e *event) error { return json.Unmarshal([]byte(s), e) }
