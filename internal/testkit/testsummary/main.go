// Command testsummary reads `go test -json` on standard input and prints
// what a person reading the test command's output needs: each package's
// closing line as go test prints it (`ok`, `FAIL`, `?`), the whole output
// of every failed test and of every package that failed outside a test
// (build errors, panics, timeouts), and at the end the slowest tests.
//
// It exits 1 when any test or package failed, or when the stream ends
// without a closing line for a package that started (the go command died),
// so `go test -json ./... | testsummary` can stand for `go test ./...` in
// scripts/test.sh under `set -o pipefail`.
//
// Usage: go test -json ./... | go run ./internal/testkit/testsummary [-slowest N]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json's TestEvent).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// timing is one finished top-level test.
type timing struct {
	pkg, test string
	elapsed   time.Duration
}

// summary folds the event stream.
type summary struct {
	out       io.Writer
	outputs   map[string]*strings.Builder // package or package+test -> output so far
	started   map[string]bool             // packages with output and no closing line yet
	timings   []timing
	failed    bool
	failTests []string
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, outputs: map[string]*strings.Builder{}, started: map[string]bool{}}
}

func key(pkg, test string) string { return pkg + "\x00" + test }

// add takes one event.
func (s *summary) add(e event) {
	k := key(e.Package, e.Test)
	switch e.Action {
	case "start", "run":
		s.started[e.Package] = true
	case "output":
		s.started[e.Package] = true
		b := s.outputs[k]
		if b == nil {
			b = &strings.Builder{}
			s.outputs[k] = b
		}
		// Keep at most 64 KiB per test: a runaway log must not fill memory.
		if b.Len() < 64<<10 {
			b.WriteString(e.Output)
		}
	case "pass", "fail", "skip":
		if e.Test != "" {
			if e.Action == "fail" {
				s.failed = true
				s.failTests = append(s.failTests, e.Package+" "+e.Test)
				if b := s.outputs[k]; b != nil {
					fmt.Fprint(s.out, b.String())
				}
			}
			if e.Action == "pass" && !strings.Contains(e.Test, "/") {
				s.timings = append(s.timings, timing{e.Package, e.Test, time.Duration(e.Elapsed * float64(time.Second))})
			}
			delete(s.outputs, k)
			return
		}
		// The package's closing event: print its closing line as go test
		// would, and for a failed package everything it printed outside
		// its tests (build errors, panics, timeouts, "FAIL" lines).
		delete(s.started, e.Package)
		pkgOut := s.outputs[k]
		delete(s.outputs, k)
		if e.Action == "fail" {
			s.failed = true
			if pkgOut != nil {
				fmt.Fprint(s.out, pkgOut.String())
				return
			}
			fmt.Fprintf(s.out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			return
		}
		if pkgOut != nil {
			// The last line of a package's own output is its closing line
			// ("ok  pkg 1.2s", "?  pkg [no test files]").
			lines := strings.Split(strings.TrimRight(pkgOut.String(), "\n"), "\n")
			fmt.Fprintln(s.out, lines[len(lines)-1])
		}
	}
}

// finish prints the slowest tests and the failures, and reports whether
// everything passed.
func (s *summary) finish(slowest int) bool {
	for pkg := range s.started {
		s.failed = true
		fmt.Fprintf(s.out, "FAIL\t%s\t(no result: the test stream ended early)\n", pkg)
	}
	sort.Slice(s.timings, func(i, j int) bool { return s.timings[i].elapsed > s.timings[j].elapsed })
	if n := min(slowest, len(s.timings)); n > 0 {
		fmt.Fprintf(s.out, "\nslowest %d tests:\n", n)
		for _, t := range s.timings[:n] {
			fmt.Fprintf(s.out, "  %8.2fs  %s %s\n", t.elapsed.Seconds(), t.pkg, t.test)
		}
	}
	if len(s.failTests) > 0 {
		fmt.Fprintf(s.out, "\nfailed tests:\n")
		for _, t := range s.failTests {
			fmt.Fprintf(s.out, "  %s\n", t)
		}
	}
	return !s.failed
}

func main() {
	slowest := flag.Int("slowest", 10, "how many of the slowest tests to list")
	flag.Parse()
	s := newSummary(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event: the go command's own output (build errors go
			// to stderr, but say so if something else gets here).
			fmt.Println(string(line))
			continue
		}
		s.add(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	if !s.finish(*slowest) {
		os.Exit(1)
	}
}
