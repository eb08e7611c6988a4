// Package secrets loads the gateway's secret key and derives keyed hashes
// from it: recipient addresses in logs, events and opt-out lists are stored
// as HMACs, and unsubscribe links are signed with it.
package secrets

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MinKeyLen is the shortest secret accepted.
const MinKeyLen = 16

// Key is the gateway's secret.
type Key []byte

// Load returns the secret: from file when set (it must not be readable by
// group or others); else from storePath/secret, created on first use so a
// single-MTA install keeps stable hashes across restarts; else a random key
// for this process only (ephemeral reports so).
func Load(file, storePath string) (k Key, ephemeral bool, err error) {
	if file != "" {
		return readKey(file)
	}
	if storePath != "" {
		p := filepath.Join(storePath, "secret")
		if _, err := os.Stat(p); err == nil {
			k, _, err := readKey(p)
			return k, false, err
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, false, err
		}
		if err := os.MkdirAll(storePath, 0o700); err != nil {
			return nil, false, err
		}
		// The key is the file's text, as readKey returns it at every later
		// start: hashes and links made now must still match after a restart.
		text := hex.EncodeToString(raw)
		if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
			return nil, false, fmt.Errorf("writing %s: %w", p, err)
		}
		return Key(text), false, nil
	}
	k = make([]byte, 32)
	_, err = rand.Read(k)
	return k, true, err
}

func readKey(p string) (Key, bool, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, false, fmt.Errorf("secret file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("secret file %s: mode %v is readable by others; chmod 600", p, st.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, false, fmt.Errorf("secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinKeyLen {
		return nil, false, fmt.Errorf("secret file %s: shorter than %d characters", p, MinKeyLen)
	}
	return Key(s), false, nil
}

// Hash returns a keyed hash of s for a purpose ("rcpt", "optout"...), hex,
// 32 characters: stable for one key, useless without it.
func (k Key) Hash(purpose, s string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(s))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Sign returns the full HMAC-SHA256 of msg under purpose.
func (k Key) Sign(purpose string, msg []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(msg)
	return m.Sum(nil)
}
