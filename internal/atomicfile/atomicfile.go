// Package atomicfile replaces a file's contents so that a crash at any
// point leaves either the old file or the new one, never a mix: the
// memory store's snapshots and the live customer directory's file use it.
package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with b durably: b goes to path+".tmp", which is
// fsynced, renamed over path, and the directory is fsynced so that the
// rename itself survives a crash. The file is created with mode 0600.
func Write(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// ReadJSON decodes the JSON file at path into v, as written by Write. A
// file that does not exist is no error: v is left as it is (a first start)
// and ReadJSON returns nil. Any other error names the file.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
