//go:build openssl && cgo

package auth

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static EVP_PKEY *aupg_load_der(const unsigned char *der, long n) {
	const unsigned char *p = der;
	return d2i_AutoPrivateKey(NULL, &p, n);
}

// aupg_sign_sha256 signs a SHA-256 digest with PKCS #1 v1.5 padding
// (RFC 8017 §8.2.1, as DKIM's rsa-sha256 wants, RFC 6376 §3.3.1). Each
// call has its own EVP_PKEY_CTX; the key is only read, which OpenSSL 3
// allows from several threads at once.
static int aupg_sign_sha256(EVP_PKEY *k, const unsigned char *dgst, size_t dlen,
                            unsigned char *sig, size_t *slen) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	int rc = -1;
	if (ctx == NULL) {
		return rc;
	}
	if (EVP_PKEY_sign_init(ctx) > 0 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
	    EVP_PKEY_sign(ctx, sig, slen, dgst, dlen) > 0) {
		rc = 0;
	}
	EVP_PKEY_CTX_free(ctx);
	return rc;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"runtime"
	"unsafe"
)

// RSABackend names what signs with RSA keys: OpenSSL's libcrypto in this
// binary (built with -tags openssl; it links libcrypto dynamically).
const RSABackend = "openssl"

// opensslRSA signs SHA-256 digests with an RSA key held by OpenSSL; any
// other request goes to the Go key it was made from.
type opensslRSA struct {
	key  *rsa.PrivateKey
	pkey *C.EVP_PKEY
}

// rsaSigner returns an OpenSSL-backed signer for an RSA key, the key
// itself for any other (or when OpenSSL refuses the key).
func rsaSigner(s crypto.Signer) crypto.Signer {
	key, ok := s.(*rsa.PrivateKey)
	if !ok {
		return s
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	pkey := C.aupg_load_der((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)))
	clear(der)
	if pkey == nil {
		return s
	}
	o := &opensslRSA{key: key, pkey: pkey}
	runtime.SetFinalizer(o, func(o *opensslRSA) { C.EVP_PKEY_free(o.pkey) })
	return o
}

// Public returns the public key.
func (o *opensslRSA) Public() crypto.PublicKey { return o.key.Public() }

// Sign signs digest: PKCS #1 v1.5 over SHA-256 by OpenSSL, anything else
// by crypto/rsa.
func (o *opensslRSA) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != 32 {
		return o.key.Sign(r, digest, opts)
	}
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return o.key.Sign(r, digest, opts)
	}
	sig := make([]byte, o.key.Size())
	n := C.size_t(len(sig))
	rc := C.aupg_sign_sha256(o.pkey, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &n)
	runtime.KeepAlive(o)
	if rc != 0 {
		return nil, errors.New("openssl: RSA signing failed")
	}
	return sig[:n], nil
}
