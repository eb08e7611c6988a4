package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/aupguard/aupguard/internal/atomicfile"
)

// WriteToken writes a new random token (32 bytes, hex) to file with mode
// 0600, creating its folder (0700) when missing. An existing file is kept
// (created false) unless force; a symlink in its place is replaced, never
// followed. The token is never printed or logged.
func WriteToken(file string, force bool) (created bool, err error) {
	if fi, err := os.Lstat(file); err == nil {
		if !force {
			if !fi.Mode().IsRegular() {
				return false, fmt.Errorf("%s exists and is not a regular file", file)
			}
			return false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return false, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return false, err
	}
	if err := atomicfile.Write(file, []byte(hex.EncodeToString(raw[:])+"\n")); err != nil {
		return false, err
	}
	return true, nil
}
