package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGeneratedKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first, eph, err := Load("", dir)
	if err != nil || eph {
		t.Fatalf("first load: %v ephemeral=%v", err, eph)
	}
	second, _, err := Load("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.Hash("rcpt", "a@example.org") != second.Hash("rcpt", "a@example.org") {
		t.Fatal("hashes differ across a restart")
	}
	st, _ := os.Stat(filepath.Join(dir, "secret"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", st.Mode().Perm())
	}
}

func TestSecretFileChecks(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		wantErr       string
	}{
		{"good", "0123456789abcdef0123", 0o600, ""},
		{"readable by others", "0123456789abcdef0123", 0o644, "readable by others"},
		{"too short", "short", 0o600, "shorter than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			os.WriteFile(p, []byte(tt.content+"\n"), tt.mode)
			os.Chmod(p, tt.mode)
			_, _, err := Load(p, "")
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, _, err := Load(filepath.Join(dir, "missing"), ""); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestHashIsKeyedAndPurposeBound(t *testing.T) {
	a, b := Key("0123456789abcdef"), Key("fedcba9876543210")
	if a.Hash("rcpt", "x") == b.Hash("rcpt", "x") || a.Hash("rcpt", "x") == a.Hash("optout", "x") {
		t.Fatal("hash not keyed or not bound to its purpose")
	}
	if len(a.Hash("rcpt", "x")) != 32 {
		t.Fatal("hash length")
	}
}
