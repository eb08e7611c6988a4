package atomicfile

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, content := range []string{"first", "second, longer than the first", "3"} {
		if err := Write(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
		}
		if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
			t.Fatalf("temporary file left behind: %v", err)
		}
	}
}

func TestWriteFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	// The temporary file cannot be created: a directory stands in its way.
	if err := os.Mkdir(path+".tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new")); err == nil {
		t.Fatal("Write succeeded with its temporary file blocked")
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "old" {
		t.Fatalf("read %q, %v; want the old content", got, err)
	}
}

// TestReadJSON: a missing file leaves the value as it is, a written one is
// decoded, and a damaged one is an error naming the file.
func TestReadJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	tests := []struct {
		name    string
		content *string
		want    map[string]int
		wantErr bool
	}{
		{"missing file", nil, map[string]int{"kept": 1}, false},
		{"written file", ptr(`{"a":2}`), map[string]int{"kept": 1, "a": 2}, false},
		{"damaged file", ptr(`{"a":`), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(path)
			if tc.content != nil {
				if err := Write(path, []byte(*tc.content)); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]int{"kept": 1}
			err := ReadJSON(path, &got)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v, want one naming %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
