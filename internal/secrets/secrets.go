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
// 32 characters: stable for one key, useless without it. It is the first
// 16 bytes of HMAC-SHA256(k, purpose NUL s).
func (k Key) Hash(purpose, s string) string {
	var sum [sha256.Size]byte
	k.mac(&sum, purpose, s, nil)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// Sign returns the full HMAC-SHA256 of msg under purpose:
// HMAC-SHA256(k, purpose NUL msg).
func (k Key) Sign(purpose string, msg []byte) []byte {
	var sum [sha256.Size]byte
	k.mac(&sum, purpose, "", msg)
	return append([]byte(nil), sum[:]...)
}

// macStack is the longest message (purpose NUL data) whose HMAC is
// computed in buffers on the stack; longer ones go through crypto/hmac.
const macStack = 384

// mac sets sum to HMAC-SHA256(k, purpose NUL s msg) (one of s and msg is
// empty). HMAC is RFC 2104 §2: H(K0 XOR opad, H(K0 XOR ipad, text)), where
// K0 is the key padded with zeros to the hash's block size, or the hash of
// a longer key. For the short messages the gateway hashes (addresses,
// tokens) both hashes run over stack buffers: no allocation per call;
// TestMACMatchesCryptoHMAC holds it to crypto/hmac.
func (k Key) mac(sum *[sha256.Size]byte, purpose, s string, msg []byte) {
	n := len(purpose) + 1 + len(s) + len(msg)
	if n > macStack || len(k) > sha256.BlockSize {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(purpose))
		m.Write([]byte{0})
		m.Write([]byte(s))
		m.Write(msg)
		copy(sum[:], m.Sum(nil))
		return
	}
	var inner [sha256.BlockSize + macStack]byte
	for i := 0; i < sha256.BlockSize; i++ {
		var c byte
		if i < len(k) {
			c = k[i]
		}
		inner[i] = c ^ 0x36
	}
	b := append(inner[:sha256.BlockSize], purpose...)
	b = append(b, 0)
	b = append(b, s...)
	b = append(b, msg...)
	ih := sha256.Sum256(b)
	var outer [sha256.BlockSize + sha256.Size]byte
	for i := 0; i < sha256.BlockSize; i++ {
		var c byte
		if i < len(k) {
			c = k[i]
		}
		outer[i] = c ^ 0x5c
	}
	copy(outer[sha256.BlockSize:], ih[:])
	*sum = sha256.Sum256(outer[:])
}
