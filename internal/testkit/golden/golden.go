// Package golden reads and checks the golden .want files of the header,
// auth and end-to-end tests, and rewrites them when the tests run with
// -update (go test ./headers/ -run TestGolden -update).
//
// A .want file is "# key: value" lines (the case's inputs and expected
// verdicts), free "# comment" lines, and one expected line per finding.
package golden

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .want files with what the tests got")

// Updating reports whether the tests run with -update.
func Updating() bool { return *update }

// File is one .want file.
type File struct {
	Path string
	// Env holds the "# key: value" lines.
	Env map[string]string
	// Lines are the expected lines, blank lines left out.
	Lines []string
	// head is every '#' line, verbatim, for a rewrite.
	head []string
}

// Read reads the .want file at path; it fails the test when it cannot.
func Read(t testing.TB, path string) *File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(path, data)
}

// Parse parses the text of a .want file.
func Parse(path string, data []byte) *File {
	f := &File{Path: path, Env: map[string]string{}, Lines: []string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			f.head = append(f.head, line)
			if k, v, ok := strings.Cut(strings.TrimSpace(line[1:]), ":"); ok && !strings.ContainsAny(strings.TrimSpace(k), " \t") {
				f.Env[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		default:
			f.Lines = append(f.Lines, line)
		}
	}
	return f
}

// Check compares got with the expected lines. With -update it rewrites
// the file with got instead (and with the Env values set by SetEnv).
func (f *File) Check(t testing.TB, got []string) {
	t.Helper()
	if *update {
		f.Lines = append([]string{}, got...)
		f.write(t)
		return
	}
	if strings.Join(got, "\n") != strings.Join(f.Lines, "\n") {
		t.Errorf("%s:\n got: %s\nwant: %s\n(go test -run %s -update rewrites the file)", f.Path,
			strings.Join(got, "\n      "), strings.Join(f.Lines, "\n      "), t.Name())
	}
}

// CheckEnv compares the value got with the "# key:" line. With -update it
// rewrites that line instead.
func (f *File) CheckEnv(t testing.TB, key, got string) {
	t.Helper()
	if *update {
		f.Env[key] = got
		for i, h := range f.head {
			if k, _, ok := strings.Cut(strings.TrimSpace(h[1:]), ":"); ok && strings.TrimSpace(k) == key {
				f.head[i] = "# " + key + ": " + got
			}
		}
		f.write(t)
		return
	}
	if f.Env[key] != got {
		t.Errorf("%s: %s %q, want %q", f.Path, key, got, f.Env[key])
	}
}

func (f *File) write(t testing.TB) {
	t.Helper()
	var b strings.Builder
	for _, h := range f.head {
		b.WriteString(h + "\n")
	}
	for _, l := range f.Lines {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(f.Path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
