package golden

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseAndRewrite(t *testing.T) {
	in := "# A comment line, with: a colon.\n# customer: acme\n# verdict: reject 550 5.7.1\n\nspf/spf_fail\n  dmarc/dmarc_reject  \n"
	f := Parse("x.want", []byte(in))
	if f.Env["customer"] != "acme" || f.Env["verdict"] != "reject 550 5.7.1" || len(f.Env) != 2 {
		t.Fatalf("env %v", f.Env)
	}
	if !reflect.DeepEqual(f.Lines, []string{"spf/spf_fail", "dmarc/dmarc_reject"}) {
		t.Fatalf("lines %q", f.Lines)
	}
	f.Check(t, []string{"spf/spf_fail", "dmarc/dmarc_reject"})
	f.CheckEnv(t, "verdict", "reject 550 5.7.1")

	// A rewrite keeps every '#' line and replaces the expected lines.
	f.Path = filepath.Join(t.TempDir(), "x.want")
	f.Lines = []string{"a/b"}
	f.write(t)
	data, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# A comment line, with: a colon.\n# customer: acme\n# verdict: reject 550 5.7.1\na/b\n"; string(data) != want {
		t.Fatalf("rewrite:\n%s\nwant:\n%s", data, want)
	}
}
