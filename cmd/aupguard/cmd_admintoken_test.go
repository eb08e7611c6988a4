package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminTokenCommand: admin-token writes a 64-hex-digit token 0600 in a
// 0700 folder it creates, prints the file but never the token, keeps an
// existing token unless -force, and replaces (never follows) a symlink.
func TestAdminTokenCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", "admin.token")
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte("admin: {token_file: "+file+"}\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runMain(append([]string{"admin-token"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errOut := run("-config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tok, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.TrimSpace(string(tok))
	if len(first) != 64 || strings.Trim(first, "0123456789abcdef") != "" {
		t.Fatalf("token %q", first)
	}
	if strings.Contains(out+errOut, first) || !strings.Contains(out, file) {
		t.Fatalf("output %q: want the file, never the token", out)
	}
	fi, _ := os.Stat(file)
	di, _ := os.Stat(filepath.Dir(file))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("modes %v %v, want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
	}

	t.Run("an existing token is kept", func(t *testing.T) {
		if code, out, _ := run("-config", cfg); code != 0 || !strings.Contains(out, "kept") {
			t.Fatalf("exit %d %q", code, out)
		}
		if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != first {
			t.Fatal("the token changed without -force")
		}
	})
	t.Run("-force replaces it", func(t *testing.T) {
		if code, _, errOut := run("-config", cfg, "-force"); code != 0 {
			t.Fatalf("exit %d %s", code, errOut)
		}
		if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) == first {
			t.Fatal("-force kept the old token")
		}
	})
	t.Run("a symlink is not followed", func(t *testing.T) {
		victim := filepath.Join(dir, "victim")
		os.WriteFile(victim, []byte("precious\n"), 0o644)
		link := filepath.Join(dir, "link.token")
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		if code, _, errOut := run("-out", link); code != 1 || !strings.Contains(errOut, "not a regular file") {
			t.Fatalf("exit %d %q: want a refusal", code, errOut)
		}
		if code, _, errOut := run("-out", link, "-force"); code != 0 {
			t.Fatalf("exit %d %s", code, errOut)
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
			t.Fatalf("the symlink's target was written: %q", b)
		}
		if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink != 0 {
			t.Fatal("the link is still a link")
		}
	})
	t.Run("no token_file and no -out", func(t *testing.T) {
		bare := filepath.Join(dir, "bare.yaml")
		os.WriteFile(bare, []byte("customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
		if code, _, errOut := run("-config", bare); code != 2 || !strings.Contains(errOut, "admin.token_file") {
			t.Fatalf("exit %d %q", code, errOut)
		}
	})
}

// TestStateFolderErrorSaysWhatToDo: a store.path that cannot be created
// stops check-config with the folder, the uid and the ways out.
func TestStateFolderErrorSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o600)
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte("store: {path: "+filepath.Join(blocker, "state")+"}\ncustomers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
	var out, errb bytes.Buffer
	if code := runMain([]string{"check-config", "-postfix", "", "-config", cfg}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"store.path " + filepath.Join(blocker, "state"), "uid ", "set store.path to a folder this user can write"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("error %q lacks %q", errb.String(), want)
		}
	}
}

// TestStateDirectoryIsTheDefault: an empty store.path takes systemd's
// $STATE_DIRECTORY (its first folder), which check-config shows.
func TestStateDirectoryIsTheDefault(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	t.Setenv("STATE_DIRECTORY", state+":"+filepath.Join(dir, "other"))
	cfg := filepath.Join(dir, "aupguard.yaml")
	os.WriteFile(cfg, []byte("customers:\n  - id: acme\n    networks: [192.0.2.1]\n    domains: [acme.example]\n"), 0o600)
	var out, errb bytes.Buffer
	if code := runMain([]string{"check-config", "-postfix", "", "-config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "    path: "+state+"\n") {
		t.Fatalf("effective store.path is not $STATE_DIRECTORY's first folder:\n%s", grepLines(out.String(), "path"))
	}
	if _, err := os.Stat(filepath.Join(state, "secret")); err != nil {
		t.Fatalf("nothing was written to the state folder: %v", err)
	}
}
