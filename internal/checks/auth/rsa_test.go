package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

// The RSA signer of this build (Go's, or OpenSSL's with -tags openssl)
// makes the very signature crypto/rsa makes: PKCS #1 v1.5 is
// deterministic, so the bytes must be equal, and they verify.
func TestRSASignerMatchesCryptoRSA(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := rsaSigner(key)
	t.Logf("RSA backend: %s (%T)", RSABackend, s)
	for _, msg := range []string{"", "a", "DKIM-Signature: v=1; a=rsa-sha256; b="} {
		sum := sha256.Sum256([]byte(msg))
		got, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%q: signature differs from crypto/rsa's", msg)
		}
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], got); err != nil {
			t.Errorf("%q: %v", msg, err)
		}
	}
	if _, err := s.Sign(rand.Reader, make([]byte, 32), &rsa.PSSOptions{Hash: crypto.SHA256}); err != nil {
		t.Errorf("PSS falls back to crypto/rsa: %v", err)
	}
}

// BenchmarkRSASign is one RSA-2048 DKIM signature by this build's signer:
// `go test -run '^$' -bench RSASign ./internal/checks/auth/` and again with
// -tags openssl.
func BenchmarkRSASign(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	s := rsaSigner(key)
	sum := sha256.Sum256([]byte("x"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Sign(rand.Reader, sum[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}
