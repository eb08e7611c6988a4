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

// TestOptOutAddressesRefuseControlCharacters: an address holding a
// control character or invalid UTF-8 is refused by Canonical (the API,
// the command, complaints) and, with its line named, by the CSV import;
// nothing of it is stored.
func TestOptOutAddressesRefuseControlCharacters(t *testing.T) {
	s := &Settings{}
	for _, tc := range []struct{ name, addr, want string }{
		{"NUL in the local part", "ja\x00ne@example.com", "control character U+0000"},
		{"NUL in the domain", "jane@exa\x00mple.com", "control character U+0000"},
		{"escape", "jane\x1b[31m@example.com", "control character U+001B"},
		{"DEL", "jane\x7f@example.com", "control character U+007F"},
		{"C1", "jane\u0085@example.com", "control character U+0085"},
		{"invalid UTF-8", "jane\xff@example.com", "invalid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := s.Canonical(tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Canonical(%q) = %q, %v; want an error with %q", tc.addr, c, err, tc.want)
			}
		})
	}
	if c, err := s.Canonical("Jane@Example.com"); err != nil || c != "jane@example.com" {
		t.Fatalf("a plain address: %q, %v", c, err)
	}

	cfg := testConfig(t, "")
	for name, mk := range svcKinds(t, cfg, clock.NewFake(t0)) {
		t.Run("CSV import/"+name, func(t *testing.T) {
			svc := mk(t)
			in := "address,note\n" +
				"ok@x.example,fine\n" +
				"nul\x00@x.example,bad\n" +
				"\"tab\t@x.example\",bad\n" +
				"note@x.example,\"bell\x07\"\n"
			res, err := svc.Import(bg, "beta", strings.NewReader(in), SourceImport)
			if err != nil {
				t.Fatal(err)
			}
			if res.Added != 1 || res.Bad != 3 || len(res.Errors) != 3 || res.Errors[0].Line != 3 || res.Errors[1].Line != 4 || res.Errors[2].Line != 5 ||
				!strings.Contains(res.Errors[0].Error, "U+0000") || !strings.Contains(res.Errors[2].Error, "note: control character U+0007") {
				t.Fatalf("import = %+v", res)
			}
			var out bytes.Buffer
			if n, err := svc.Export(bg, "beta", &out); err != nil || n != 1 {
				t.Fatalf("export = %d, %v:\n%s", n, err, out.String())
			}
		})
	}
}
