package main

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDevelopmentCitationsExist holds docs/development.md to the code: every
// path it cites between backquotes (a file or folder of the repository) and
// every Go name it cites as package.Name or package.Type.Method (a
// top-level name or method of a package of that name) exists, and every
// test it names is a test of the repository. A package moved or renamed
// without the page fails here.
func TestDevelopmentCitationsExist(t *testing.T) {
	const root = "../.."
	page, err := os.ReadFile(filepath.Join(root, "docs/development.md"))
	if err != nil {
		t.Fatal(err)
	}
	decls, tests := repoNames(t, root)
	var paths, names, testNames int
	for _, m := range regexp.MustCompile("`([^`\n]+)`").FindAllStringSubmatch(string(page), -1) {
		c := m[1]
		switch {
		case strings.ContainsAny(c, " *{}=:#") || strings.HasPrefix(c, "http"):
			// commands, patterns, YAML and Go expressions: not citations
		case strings.Contains(c, "/"):
			paths++
			if _, err := os.Stat(filepath.Join(root, strings.TrimPrefix(c, "./"))); err != nil {
				t.Errorf("docs/development.md cites %s: %v", c, err)
			}
		case regexp.MustCompile(`^Test[A-Z]\w*$`).MatchString(c):
			testNames++
			if !tests[c] {
				t.Errorf("docs/development.md names the test %s, which no test file has", c)
			}
		case regexp.MustCompile(`^[a-z][a-z0-9]*(\.[A-Z]\w*){1,2}$`).MatchString(c):
			names++
			parts := strings.Split(c, ".")
			pkgDecls, ok := decls[parts[0]]
			if !ok && isStdlib(parts[0]) {
				continue // io.Writer, testing.T.Run: the standard library's
			}
			if !ok {
				t.Errorf("docs/development.md cites %s: no package %s", c, parts[0])
				continue
			}
			if !pkgDecls[strings.Join(parts[1:], ".")] {
				t.Errorf("docs/development.md cites %s: package %s has no %s", c, parts[0], strings.Join(parts[1:], "."))
			}
		}
	}
	// The page cites plenty of each; a parse that finds none is broken.
	if paths < 30 || names < 10 || testNames < 2 {
		t.Errorf("found %d paths, %d Go names, %d tests in docs/development.md: the citations were not read", paths, names, testNames)
	}
}

// isStdlib reports whether name is a package of the standard library.
func isStdlib(name string) bool {
	p, err := build.Default.Import(name, "", build.FindOnly)
	return err == nil && p.Goroot
}

// repoNames returns, by package name, the top-level names and Type.Method
// names of the repository's packages (third_party left out), and the names
// of its Test functions.
func repoNames(t *testing.T, root string) (map[string]map[string]bool, map[string]bool) {
	t.Helper()
	decls := map[string]map[string]bool{}
	tests := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, "_test.go") {
			for _, dl := range f.Decls {
				if fd, ok := dl.(*ast.FuncDecl); ok && fd.Recv == nil && strings.HasPrefix(fd.Name.Name, "Test") {
					tests[fd.Name.Name] = true
				}
			}
			return nil
		}
		pkg := f.Name.Name
		if decls[pkg] == nil {
			decls[pkg] = map[string]bool{}
		}
		for _, dl := range f.Decls {
			switch dl := dl.(type) {
			case *ast.FuncDecl:
				if dl.Recv == nil {
					decls[pkg][dl.Name.Name] = true
					continue
				}
				typ := dl.Recv.List[0].Type
				if s, ok := typ.(*ast.StarExpr); ok {
					typ = s.X
				}
				if ix, ok := typ.(*ast.IndexExpr); ok {
					typ = ix.X
				}
				if id, ok := typ.(*ast.Ident); ok {
					decls[pkg][id.Name+"."+dl.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, sp := range dl.Specs {
					switch sp := sp.(type) {
					case *ast.TypeSpec:
						decls[pkg][sp.Name.Name] = true
						if st, ok := sp.Type.(*ast.StructType); ok {
							for _, fl := range st.Fields.List {
								for _, n := range fl.Names {
									decls[pkg][sp.Name.Name+"."+n.Name] = true
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range sp.Names {
							decls[pkg][n.Name] = true
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return decls, tests
}

// TestObserversDoNotDependOnTheEngine holds docs/development.md's word
// that the events recorder and the metrics depend on the engine's data
// packages only: neither reaches internal/engine/gateway (nor the daemon)
// through any import.
func TestObserversDoNotDependOnTheEngine(t *testing.T) {
	const mod = "github.com/aupguard/aupguard/"
	for _, pkg := range []string{"internal/observability/events", "internal/observability/metrics"} {
		out, err := exec.Command("go", "list", "-deps", "../../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, mod+"internal/engine/decision") {
			t.Fatalf("go list -deps %s gave no plausible list:\n%s", pkg, out)
		}
		for _, banned := range []string{"internal/engine/gateway", "internal/engine/daemon"} {
			if slices.Contains(deps, mod+banned) {
				t.Errorf("%s depends on %s", pkg, banned)
			}
		}
	}
}
