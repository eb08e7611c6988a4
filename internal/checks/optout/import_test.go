package optout

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
)

// genCSV writes n lines with a header; every badEvery-th line is bad.
func genCSV(n, badEvery int) (*bytes.Buffer, []int) {
	var b bytes.Buffer
	b.WriteString("address,note\n")
	var bad []int
	for i := 1; i <= n; i++ {
		if badEvery > 0 && i%badEvery == 0 {
			fmt.Fprintf(&b, "broken-address-%d,x\n", i)
			bad = append(bad, i+1) // line numbers count the header
			continue
		}
		fmt.Fprintf(&b, "user%d@example.com,imported\n", i)
	}
	return &b, bad
}

func TestImportExportRoundTrip(t *testing.T) {
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			in := "Address,Note\n" +
				"a@x.example,one\n" +
				"\"b@x.example\",\"two, with comma\"\n" +
				"not an address,bad\n" +
				"a@X.EXAMPLE,duplicate\n" +
				"\"unterminated,quote\n"
			res, err := svc.Import(bg, "beta", strings.NewReader(in), SourceImport)
			if err != nil {
				t.Fatal(err)
			}
			if res.Added != 2 || res.Duplicates != 1 || res.Bad != 2 || len(res.Errors) != 2 || res.Errors[0].Line != 4 || res.Errors[1].Line != 6 {
				t.Fatalf("import = %+v", res)
			}
			var out bytes.Buffer
			if n, err := svc.Export(bg, "beta", &out); err != nil || n != 2 {
				t.Fatalf("export = %d, %v", n, err)
			}
			if !strings.HasPrefix(out.String(), "list,address,hash,source,time,note\n") || !strings.Contains(out.String(), `"two, with comma"`) {
				t.Fatalf("export:\n%s", out.String())
			}
			// The export imports into another list as is.
			res, err = svc.Import(bg, "acme", bytes.NewReader(out.Bytes()), SourceImport)
			if err != nil || res.Added != 2 || res.Bad != 0 {
				t.Fatalf("re-import = %+v, %v", res, err)
			}
			if _, ok, _ := svc.Check(bg, "acme", "b@x.example"); !ok {
				t.Fatal("re-imported entry missing")
			}
		})
	}
}

func TestImport100kWithBadLines(t *testing.T) {
	if testing.Short() {
		t.Skip("100k import")
	}
	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run(name, func(t *testing.T) {
			svc := mk(t)
			in, bad := genCSV(100000, 997)
			start := time.Now()
			res, err := svc.Import(bg, "acme", in, SourceImport)
			d := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			// The time is logged, never asserted: BenchmarkImport100k
			// measures it (docs/optout.md).
			t.Logf("%s: imported 100k lines in %s: %d added, %d bad", name, d, res.Added, res.Bad)
			if res.Added != 100000-len(bad) || res.Bad != len(bad) || res.Errors[0].Line != bad[0] || res.Errors[len(res.Errors)-1].Line != bad[len(bad)-1] {
				t.Fatalf("import = added %d bad %d first %+v; want %d bad starting at line %d", res.Added, res.Bad, res.Errors[0], len(bad), bad[0])
			}
		})
	}
}

// BenchmarkImport100k imports a generated 100k-line CSV with a bad line
// every 997 lines into each backend and reports the time per import.
func BenchmarkImport100k(b *testing.B) {
	cfg := testConfig(b, "")
	data, bad := genCSV(100000, 997)
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				svc := benchService(b, name, cfg)
				b.StartTimer()
				start := time.Now()
				res, err := svc.Import(bg, "acme", bytes.NewReader(data.Bytes()), SourceImport)
				if err != nil {
					b.Fatal(err)
				}
				if res.Bad != len(bad) {
					b.Fatalf("bad lines %d, want %d", res.Bad, len(bad))
				}
				b.Logf("%s: 100k lines in %s (%d added, %d bad lines reported, first at line %d)", name, time.Since(start), res.Added, res.Bad, res.Errors[0].Line)
			}
		})
	}
}
