package links_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aupguard/aupguard/internal/checks/content/links"
	"github.com/aupguard/aupguard/internal/testkit/fakedns"
	"github.com/aupguard/aupguard/internal/testkit/golden"
)

// TestGolden runs each testdata/*.msg through the Extractor (streamed in
// small chunks) and the lists of testdata/world.dns, and compares the
// hosts, listings and errors with the sibling .want file ("# own:" gives
// the customer's domains; go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	srv := fakedns.StartFile(t, filepath.Join("testdata", "world.dns"))
	l := newLists(t, links.Config{Zones: zones}, newResolver(t, srv))
	files, err := filepath.Glob(filepath.Join("testdata", "*.msg"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden messages: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".msg")
		t.Run(name, func(t *testing.T) {
			msg, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := golden.Read(t, strings.TrimSuffix(path, ".msg")+".want")
			var own []string
			if o := want.Env["own"]; o != "" {
				own = strings.Fields(o)
			}
			found := feed(t, string(msg), 37, links.Options{Own: own})
			if found.Err != nil {
				t.Fatalf("extraction error: %v", found.Err)
			}
			res := l.Check(context.Background(), found.Hosts)
			var got []string
			for _, h := range found.Hosts {
				got = append(got, "host "+h.Name+" "+h.URL)
			}
			for _, x := range res.Listings {
				got = append(got, "listed "+x.Domain+" "+x.Zone+" "+x.Code+" "+x.Meaning)
			}
			for _, x := range res.Errors {
				got = append(got, "error "+x.Domain+" "+x.Zone+" "+x.Code)
			}
			want.Check(t, got)
			listed := "no"
			if res.Listed() {
				listed = "yes: " + res.Listings[0].Domain
			}
			want.CheckEnv(t, "listed", listed)
		})
	}
}
