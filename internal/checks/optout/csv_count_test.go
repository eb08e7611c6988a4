package optout

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// TestImportCountsAddUp: every data line is added, a duplicate or bad, and
// a bad line's error names its real fault.
func TestImportCountsAddUp(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(time.Unix(1_800_000_000, 0))) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			for _, tt := range []struct {
				name, in               string
				lines, added, dup, bad int
				errLine                int
				errText                string
			}{
				{"bare quote", "address,note\na@x.example,ok\nbad \"q,x\nb@x.example,ok\nnot-an-address,x\na@x.example,again\n", 5, 2, 1, 2, 3, "bare \""},
				{"unclosed quote", "address,note\nc@x.example,ok\n\"d@x.example,unclosed\ne@x.example,ok\n", 2, 1, 0, 1, 3, "quoted field opened on line 3 is not closed"},
				{"unknown list column", "list,address\nacmee,f@x.example\nacme,g@x.example\n", 2, 1, 0, 1, 2, `unknown list "acmee"`},
			} {
				t.Run(tt.name, func(t *testing.T) {
					list := "acme"
					if strings.HasPrefix(tt.in, "list,") {
						list = ""
					}
					res, err := svc.Import(bg, list, strings.NewReader(tt.in), SourceImport)
					if err != nil {
						t.Fatal(err)
					}
					if res.Lines != tt.lines || res.Added != tt.added || res.Duplicates != tt.dup || res.Bad != tt.bad || res.Lines != res.Added+res.Duplicates+res.Bad {
						t.Fatalf("result %+v, want %d lines: %d added, %d duplicates, %d bad", res, tt.lines, tt.added, tt.dup, tt.bad)
					}
					if len(res.Errors) == 0 || res.Errors[0].Line != tt.errLine || !strings.Contains(res.Errors[0].Error, tt.errText) {
						t.Fatalf("errors %+v, want line %d %q", res.Errors, tt.errLine, tt.errText)
					}
				})
			}
		})
	}
}

// TestSplitMboxBoundedReports feeds an mbox whose second report has a
// 60 MiB line: it is named as too large (never cut short and parsed), the
// reports around it come whole, and the splitter holds at most one report
// of MaxReportSize (the buffer doubles up to it: under 3 times the cap
// allocated in all, half the line).
func TestSplitMboxBoundedReports(t *testing.T) {
	const long = 60 << 20
	in := io.MultiReader(
		strings.NewReader("From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\n"),
		io.LimitReader(fillReader('x'), long),
		strings.NewReader("\n\nFrom c@x Mon Jan  1 00:00:00 2024\nSubject: three\n\nbody\n"))
	type got struct {
		line int
		msg  string
		err  error
	}
	var gs []got
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	err := SplitMboxLines(in, func(msg []byte, line int, err error) error {
		gs = append(gs, got{line, string(msg), err})
		return nil
	})
	runtime.ReadMemStats(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 3 || gs[0].line != 1 || gs[0].msg != "Subject: one\n\nbody" || gs[1].line != 6 || !errors.Is(gs[1].err, ErrReportTooLarge) ||
		gs[2].line != 11 || gs[2].msg != "Subject: three\n\nbody" || gs[2].err != nil {
		t.Fatalf("reports: %+v", gs)
	}
	if alloc := b.TotalAlloc - a.TotalAlloc; alloc > 3*MaxReportSize {
		t.Fatalf("%d bytes allocated for a 30 MiB line: more than a report's cap", alloc)
	}
}

type fillReader byte

func (f fillReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = byte(f)
	for n := 1; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
	return len(p), nil
}
