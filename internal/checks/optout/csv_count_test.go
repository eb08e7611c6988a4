package optout

import (
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// TestImportCountsAddUp: every data line is added, a duplicate or bad, and
// a bad line's error names its real fault (issue 17 item 7).
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
