package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
)

// MinRSABits is the smallest RSA signing key accepted (RFC 8301 §3.2
// requires at least 1024 and recommends 2048; receivers treat shorter
// keys as no signature).
const MinRSABits = 2048

// ReadDKIMKey reads a DKIM private key: PEM, PKCS#1 ("RSA PRIVATE KEY") or
// PKCS#8 ("PRIVATE KEY"), RSA of at least MinRSABits bits or Ed25519
// (RFC 8463). The file must not be readable by group or others: it is a
// secret that signs the customer's mail.
func ReadDKIMKey(path string) (crypto.Signer, error) {
	if _, err := statKey(path); err != nil {
		return nil, err
	}
	return readKey(path)
}

// statKey checks that path is a regular file readable by its owner only.
func statKey(path string) (os.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("key file %s does not exist", path)
		}
		return nil, fmt.Errorf("key file: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by group or others (mode %04o): chmod 600 it", path, perm)
	}
	return fi, nil
}

// readKey reads and parses the key file at path (statKey checked it).
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %v", err)
	}
	return ParseDKIMKey(data, path)
}

// ParseDKIMKey parses PEM key data as ReadDKIMKey does; name is for errors.
func ParseDKIMKey(data []byte, name string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s: no PEM block found", name)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key file %s: PEM block %q is not a private key (want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")", name, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %v", name, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("key file %s: RSA key of %d bits is too weak (want at least %d)", name, bits, MinRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("key file %s: %T keys cannot sign DKIM (want RSA or Ed25519)", name, key)
	}
}

// keyFiles are the DKIM key files one config has read, by path: the
// customers' keys are read when the customers are validated (at config
// load and at each change of the live directory) and the signer takes
// them from here, so that a key file is read once and not again for
// signing. A file that changes on disk (another inode, size, time or
// mode) is read again when next validated; a new config (reload) starts
// with none.
type keyFiles struct {
	mu sync.Mutex
	m  map[string]keyFile
}

type keyFile struct {
	fi     os.FileInfo
	signer crypto.Signer
	err    error
}

func newKeyFiles() *keyFiles { return &keyFiles{m: map[string]keyFile{}} }

// load returns the key at path, read now unless the file is the one read
// before. Its permissions are checked every time (os.Stat, no read).
func (kf *keyFiles) load(path string) (crypto.Signer, error) {
	fi, err := statKey(path)
	if err != nil {
		kf.mu.Lock()
		delete(kf.m, path)
		kf.mu.Unlock()
		return nil, err
	}
	kf.mu.Lock()
	e, ok := kf.m[path]
	kf.mu.Unlock()
	if ok && sameFile(e.fi, fi) {
		return e.signer, e.err
	}
	signer, err := readKey(path)
	kf.mu.Lock()
	kf.m[path] = keyFile{fi: fi, signer: signer, err: err}
	kf.mu.Unlock()
	return signer, err
}

// get returns the key at path as validation read it, or reads it now
// when it was not (a config validated without this package's section).
func (kf *keyFiles) get(path string) (crypto.Signer, error) {
	kf.mu.Lock()
	e, ok := kf.m[path]
	kf.mu.Unlock()
	if ok {
		return e.signer, e.err
	}
	return kf.load(path)
}

// sameFile reports whether b is the file a was: same inode, size,
// modification time and mode.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && a.Mode() == b.Mode()
}
