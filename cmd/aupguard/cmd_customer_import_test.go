package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

// TestCustomerImportCommand runs `aupguard customer import` against a
// directory in a private Redis: each format streamed from its file, a bad
// entry refusing the whole file and naming it, the answer saying what was
// applied.
func TestCustomerImportCommand(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte(`store: {backend: redis, timeout: 5s, redis: {addrs: ["`+r.Addr()+`"]}}
customers:
  - id: acme
    networks: [192.0.2.0/24]
    domains: [acme.example]
`), 0o600)
	var nd bytes.Buffer
	for i := 0; i < 1200; i++ {
		fmt.Fprintf(&nd, "{\"id\": \"n%d\", \"logins\": [\"n%d\"], \"domains\": [\"n%d.example\"]}\n", i, i, i)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	ndFile := write("many.ndjson", nd.String())
	badYAML := write("bad.yaml", "customers:\n  - {id: y1, logins: [y1], domains: [y1.example]}\n  - {id: y2, logins: [y2], domains: [y2.example], colour: blue}\n")
	goodJSON := write("two.json", `{"customers": [{"id": "j1", "logins": ["j1"], "domains": ["j1.example"]}, {"id": "n0", "logins": ["n0"], "domains": ["n0.example"], "mode": "monitor"}]}`)
	wide := write("wide.json", `[{"id": "w1", "networks": ["0.0.0.0/0"], "domains": ["w1.example"]}]`)
	conflict := write("conflict.json", `[{"id": "c1", "networks": ["192.0.2.0/24"], "domains": ["c1.example"]}]`)
	for _, tt := range []struct {
		name        string
		args        []string
		status      int
		out, errOut string
	}{
		{"ndjson streamed", []string{"customer", "import", "-config", cfg, ndFile}, 0, "imported 1200 customers (1200 added, 0 replaced), versions 1 to 1200", ""},
		{"a bad yaml entry: nothing", []string{"customer", "import", "-config", cfg, badYAML}, 1, "", "customers[1] (line 3): colour: unknown field"},
		{"nothing of it applied", []string{"customer", "show", "-config", cfg, "y1"}, 1, "", "no such customer"},
		{"json: an add and a replacement", []string{"customer", "import", "-config", cfg, goodJSON}, 0, "imported 2 customers (1 added, 1 replaced), versions 1201 to 1202", ""},
		{"a conflict with the file: nothing", []string{"customer", "import", "-config", cfg, conflict}, 1, "", `customers[0]: customer c1: networks[0]: network 192.0.2.0/24 is already customer "acme"'s`},
		{"a network broader than the bound: nothing", []string{"customer", "import", "-config", cfg, wide}, 1, "", "customers[0]: customer w1: networks[0]: network 0.0.0.0/0 is broader than directory.max_network_prefix.ipv4"},
		{"-force: applied, the waived rules printed", []string{"customer", "import", "-config", cfg, "-force", wide}, 0, "imported 1 customers (1 added, 0 replaced), versions 1203 to 1203", "aupguard customer import: warning: customer w1: networks[0]: forced: network 0.0.0.0/0 is broader"},
		{"format flag checked", []string{"customer", "import", "-config", cfg, "-format", "xml", goodJSON}, 1, "", `-format "xml"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			st := runMain(tt.args, &out, &errOut)
			if st != tt.status || !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.errOut) {
				t.Fatalf("%v: status %d\nstdout: %s\nstderr: %s\nwant %d, %q, %q", tt.args, st, out.String(), errOut.String(), tt.status, tt.out, tt.errOut)
			}
		})
	}
}
