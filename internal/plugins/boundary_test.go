package plugins

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/aupguard/aupguard/"

// isCore says whether p is the core: the engine, observability, the
// store and the commands. None of it may depend on a family.
func isCore(p string) bool {
	for _, c := range []string{"internal/engine/", "internal/observability/", "internal/store", "cmd/"} {
		if strings.HasPrefix(p, mod+c) {
			return true
		}
	}
	return false
}

// isFamily says whether p is a family's package (or one of its own).
func isFamily(p string) bool {
	for _, f := range []string{"internal/checks", "ratelimit", "headers"} {
		if p == mod+f || strings.HasPrefix(p, mod+f+"/") {
			return true
		}
	}
	return false
}

// allowed are the import edges from the core to a family that stand for
// now, each with the reason; the test fails on any other, and on an
// allowed edge that is gone (so that the list only shrinks).
var allowed = map[[2]string]string{
	// The binary imports the one list, which registers the families.
	{mod + "cmd/aupguard", mod + "internal/plugins"}: "the family list",
	// Not moved yet (issue 26 §1): the report's and the console's
	// opt-out standing, bounce and blocklist tables and the customer
	// API's quota, typed by their families; they become the families'
	// report sections, console panels and admin routes (setup.Host).
	{mod + "internal/observability/report", mod + "internal/checks/optout"}:     "report: standings, opt-out tables",
	{mod + "internal/observability/report", mod + "internal/checks/reputation"}: "report: bounces, blocklists",
	{mod + "internal/observability/admin", mod + "internal/checks/optout"}:      "console: standing, trend",
	{mod + "internal/observability/admin", mod + "internal/checks/reputation"}:  "admin: reputation for the report",
	{mod + "internal/observability/admin", mod + "ratelimit"}:                   "admin: customer quota API and console table",
	{mod + "cmd/aupguard", mod + "internal/checks/optout"}:                      "report command: standings from the running gateway",
}

// violations walks the import graph (package → its imports) from every
// core package and returns each path that reaches a family package
// without passing an allowed edge, and the allowed edges never taken.
func violations(graph map[string][]string, allowed map[[2]string]string) (bad []string, unused [][2]string) {
	used := map[[2]string]bool{}
	for p := range graph {
		if !isCore(p) {
			continue
		}
		// Breadth first, keeping the path that reached each package.
		from := map[string]string{p: ""}
		queue := []string{p}
		for len(queue) > 0 {
			q := queue[0]
			queue = queue[1:]
			for _, i := range graph[q] {
				if _, ok := allowed[[2]string{q, i}]; ok {
					used[[2]string{q, i}] = true
					continue
				}
				if _, seen := from[i]; seen {
					continue
				}
				from[i] = q
				if isFamily(i) {
					path := []string{i}
					for s := q; s != ""; s = from[s] {
						path = append(path, s)
					}
					slices.Reverse(path)
					bad = append(bad, strings.ReplaceAll(strings.Join(path, " → "), mod, ""))
					continue
				}
				queue = append(queue, i)
			}
		}
	}
	for e := range allowed {
		if !used[e] {
			unused = append(unused, e)
		}
	}
	slices.Sort(bad)
	return bad, unused
}

// importGraph is the module's import graph as go list reports it
// (production code: test files left out).
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", mod+"...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		graph[p.ImportPath] = p.Imports
	}
	return graph
}

// TestCoreImportsNoFamily: no package of the core (engine,
// observability, store, commands) depends on a family package, directly
// or through another package, except through the edges in allowed.
func TestCoreImportsNoFamily(t *testing.T) {
	graph := importGraph(t)
	for _, must := range []string{mod + "internal/engine/daemon", mod + "internal/checks/optout", mod + "cmd/aupguard"} {
		if _, ok := graph[must]; !ok {
			t.Fatalf("go list gave no plausible graph: %s missing (%d packages)", must, len(graph))
		}
	}
	bad, unused := violations(graph, allowed)
	for _, b := range bad {
		t.Errorf("core depends on a family: %s", b)
	}
	for _, e := range unused {
		t.Errorf("allowed edge %s → %s is gone: take it off the list", e[0], e[1])
	}
}

// TestViolationsFindsIndirectPaths: the walk reports a core package
// reaching a family directly and through a non-core package, keeps to
// the allowed edges, and reports an allowed edge no longer taken.
func TestViolationsFindsIndirectPaths(t *testing.T) {
	core, core2, lib, fam := mod+"internal/engine/x", mod+"internal/observability/y", mod+"internal/lib", mod+"internal/checks/z"
	for _, tc := range []struct {
		name    string
		graph   map[string][]string
		allowed map[[2]string]string
		bad     []string
		unused  int
	}{
		{"clean", map[string][]string{core: {lib}, lib: {"fmt"}, fam: {core}}, nil, nil, 0},
		{"direct", map[string][]string{core: {fam}}, nil, []string{"internal/engine/x → internal/checks/z"}, 0},
		{"through a library", map[string][]string{core2: {lib}, lib: {fam}},
			nil, []string{"internal/observability/y → internal/lib → internal/checks/z"}, 0},
		{"allowed", map[string][]string{core: {fam}}, map[[2]string]string{{core, fam}: "test"}, nil, 0},
		{"allowed but gone", map[string][]string{core: {lib}}, map[[2]string]string{{core, fam}: "test"}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, unused := violations(tc.graph, tc.allowed)
			if !slices.Equal(bad, tc.bad) || len(unused) != tc.unused {
				t.Errorf("got %q and %d unused, want %q and %d", bad, len(unused), tc.bad, tc.unused)
			}
		})
	}
}
