// Package atomicfile writes files so that a reader sees the old content or
// the new, never a torn one: a temporary file in the same directory,
// synced, then renamed into place. Brokers read the CRLs, certificates and
// keys fleetpki writes for them while it writes them.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes data to path with mode, atomically.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// File is a file being written atomically: written to a temporary file
// and renamed into place by Commit; Abort (after Commit, a no-op) removes
// the temporary file.
type File struct {
	*os.File
	path string
	mode os.FileMode
	done bool
}

// Create starts writing path with mode.
func Create(path string, mode os.FileMode) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &File{File: tmp, path: path, mode: mode}, nil
}

// Commit syncs the file and renames it into place.
func (f *File) Commit() error {
	if err := f.Chmod(f.mode); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := os.Rename(f.Name(), f.path); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	f.done = true
	return nil
}

// Abort drops a file that was not committed.
func (f *File) Abort() {
	if !f.done {
		f.Close()
		os.Remove(f.Name())
	}
}
