// Package atomicfile writes files so that a reader never sees part of one:
// the data goes to a temporary file in the same folder, synced, which then
// takes the name. Every file ocisigner writes (refreshed tokens, keys files,
// the interception CA, client configs) is written this way.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, mode perm: a reader sees the old file or
// the new one.
func Write(path string, data []byte, perm os.FileMode) error {
	tmp, err := temp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op once renamed
	return os.Rename(tmp, path)
}

// Place writes data to path, mode perm, only if nothing is there: it fails
// with an error wrapping fs.ErrExist otherwise (two processes creating the
// same file: one wins, whole).
func Place(path string, data []byte, perm os.FileMode) error {
	tmp, err := temp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Link(tmp, path)
}

// temp writes data to a new temporary file beside path and returns its name.
func temp(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}
