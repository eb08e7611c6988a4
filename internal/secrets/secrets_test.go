package secrets

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

// TestMACMatchesCryptoHMAC holds the stack-buffer HMAC of Hash and Sign
// to crypto/hmac, for keys shorter than, as long as and longer than the
// block size, and messages on both sides of the stack buffer's size.
func TestMACMatchesCryptoHMAC(t *testing.T) {
	ref := func(k Key, purpose string, msg []byte) []byte {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(purpose))
		m.Write([]byte{0})
		m.Write(msg)
		return m.Sum(nil)
	}
	for _, kl := range []int{16, 32, 63, 64, 65, 200} {
		k := Key(strings.Repeat("k", kl-1) + "z")
		for _, ml := range []int{0, 1, 100, macStack - 10, macStack, macStack + 1, 5000} {
			msg := strings.Repeat("m", ml)
			want := ref(k, "optout", []byte(msg))
			if got := k.Sign("optout", []byte(msg)); !bytes.Equal(got, want) {
				t.Errorf("key %d msg %d: Sign = %x, want %x", kl, ml, got, want)
			}
			if got := k.Hash("optout", msg); got != hex.EncodeToString(want[:16]) {
				t.Errorf("key %d msg %d: Hash = %s, want %x", kl, ml, got, want[:16])
			}
		}
	}
	k := Key("0123456789abcdef")
	if n := testing.AllocsPerRun(100, func() { _ = k.Hash("optout", "someone@example.org") }); n > 1 {
		t.Errorf("Hash allocates %v times, want 1 (the result)", n)
	}
}
