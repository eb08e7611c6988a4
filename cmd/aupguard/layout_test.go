package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// dirToken is a directory as the README's layout tree names it.
var dirToken = regexp.MustCompile(`^[a-z0-9_.-]+(/[a-z0-9_.-]+)*/$`)

// readmeLayout reads the tree in the README's "## Layout" section: every
// directory it names, as a path from the repository root. A line's first
// directory is the parent of the lines indented below it; further
// directories on a line are its siblings.
func readmeLayout(t *testing.T, readme string) []string {
	t.Helper()
	_, after, ok := strings.Cut(readme, "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	_, block, ok := strings.Cut(after, "```\n")
	if !ok {
		t.Fatal("the Layout section has no tree")
	}
	block, _, _ = strings.Cut(block, "```")
	var out []string
	parents := map[int]string{} // indent -> the directory that line opened
	for _, line := range strings.Split(block, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" {
			continue
		}
		indent := len(line) - len(trimmed)
		parent := ""
		for i := indent - 1; i >= 0; i-- {
			if p, ok := parents[i]; ok {
				parent = p
				break
			}
		}
		for k := range parents {
			if k >= indent {
				delete(parents, k)
			}
		}
		first := true
		for _, tok := range strings.Fields(trimmed) {
			if !dirToken.MatchString(tok) {
				continue
			}
			p := parent + tok
			out = append(out, strings.TrimSuffix(p, "/"))
			if first {
				parents[indent] = p
				first = false
			}
		}
	}
	return out
}

// TestReadmeLayout holds the README's layout tree to the repository: every
// directory it names exists, and every Go package is in it (third_party's
// are under their module's entry).
func TestReadmeLayout(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, d := range readmeLayout(t, string(b)) {
		listed[d] = true
		if st, err := os.Stat(filepath.Join(root, d)); err != nil || !st.IsDir() {
			t.Errorf("README layout names %s/, which is not a directory", d)
		}
	}
	if len(listed) < 10 {
		t.Fatalf("README layout tree read as %d directories; the parser or the tree is broken", len(listed))
	}
	var missing []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || strings.HasPrefix(rel, "third_party/")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") {
			dir := filepath.ToSlash(filepath.Dir(rel))
			if !listed[dir] && !contains(missing, dir) {
				missing = append(missing, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("package directory %s/ is not in the README's layout tree", m)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
