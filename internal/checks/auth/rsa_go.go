//go:build !openssl || !cgo

package auth

import "crypto"

// RSABackend names what signs with RSA keys: Go's crypto/rsa in the
// default, static, pure-Go binary; OpenSSL's libcrypto in a binary built
// with -tags openssl (rsa_openssl.go).
const RSABackend = "go"

// rsaSigner returns the signer dkim_sign uses for a key: the key itself.
func rsaSigner(s crypto.Signer) crypto.Signer { return s }
