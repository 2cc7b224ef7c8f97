// Package backup writes and restores a fleetpki backup: one file, encrypted
// with a passphrase (age, scrypt), holding a tar archive of a manifest, the
// database's rows read in one snapshot while serve runs, and the data
// directory's CA files (key files included when they are files; a KMS's
// keys are only referenced, through kms.json), custom profiles and the
// offline root's signed bundle.
//
// A restore goes into an empty data directory and an empty database of the
// same kind (SQLite or Postgres): it migrates the database to the backup's
// schema version, loads the rows, migrates the rest of the way, and raises
// every CRL number past any the lost system could have published since the
// backup (CRL numbers must never be reused).
package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/fleetpki/fleetpki/migrations"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// Format names this package's backup layout.
const Format = "fleetpki-backup/1"

// Manifest describes a backup.
type Manifest struct {
	Format        string         `json:"format"`
	Created       time.Time      `json:"created"`
	Dialect       string         `json:"dialect"`
	SchemaVersion int64          `json:"schema_version"`
	Dump          store.DumpInfo `json:"dump"`
	Files         []string       `json:"files"`
	// KMS says the CA keys live in a KMS: the backup names them
	// (ca/kms.json) but holds no key.
	KMS bool `json:"kms"`
}

// Store is what a backup reads and a restore writes.
type Store interface {
	MigrationStatus(ctx context.Context) ([]migrations.Migration, int64, error)
	Dump(ctx context.Context, w io.Writer) (store.DumpInfo, error)
	MigrateTo(ctx context.Context, version int64) error
	Load(ctx context.Context, r io.Reader, crlGap int64) error
	Migrate(ctx context.Context) error
}

// dataFiles are the data directory's files a backup holds, besides ca/.
var dataFiles = []string{"root-signed.pem"}

// maxCRLsPerSecond bounds how many CRL numbers one issuer can use per
// second (the issuing CA's updater debounces revocations by 500 ms and
// numbers a complete and a delta CRL per run): a restore raises every
// number by this times the seconds since the backup, plus a margin.
const maxCRLsPerSecond = 4

// Write writes a backup of st and dataDir, encrypted with passphrase, to w.
func Write(ctx context.Context, w io.Writer, st Store, dialect, dataDir, passphrase string, now time.Time) (Manifest, error) {
	if len(passphrase) < 12 {
		return Manifest{}, pki.Errorf(pki.Invalid, "the backup passphrase must have at least 12 characters")
	}
	_, version, err := st.MigrationStatus(ctx)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Format: Format, Created: now.UTC(), Dialect: dialect, SchemaVersion: version}
	// The rows go to a temporary file first: tar wants sizes up front.
	tmp, err := os.CreateTemp("", "fleetpki-backup-*.jsonl")
	if err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	defer func() { tmp.Close(); os.Remove(tmp.Name()) }()
	if m.Dump, err = st.Dump(ctx, tmp); err != nil {
		return m, err
	}
	files := map[string][]byte{}
	modes := map[string]int64{}
	caDir := filepath.Join(dataDir, "ca")
	err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, p)
		inCA := strings.HasPrefix(p, caDir+string(filepath.Separator))
		inProfiles := strings.HasPrefix(rel, "profiles"+string(filepath.Separator)) && strings.HasSuffix(rel, ".json")
		if d.IsDir() || !(inCA || inProfiles || contains(dataFiles, rel)) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)], modes[filepath.ToSlash(rel)] = b, int64(fi.Mode().Perm())
		m.Files = append(m.Files, filepath.ToSlash(rel))
		m.KMS = m.KMS || rel == filepath.Join("ca", "kms.json")
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("backup: the data directory: %w", err)
	}
	if _, ok := files["ca/chain.pem"]; !ok {
		return m, pki.Errorf(pki.NotFound, "backup: no CA in %s", dataDir)
	}
	rcpt, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	enc, err := age.Encrypt(w, rcpt)
	if err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	tw := tar.NewWriter(enc)
	mb, _ := json.MarshalIndent(m, "", "  ")
	add := func(name string, mode int64, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, ModTime: m.Created}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := add("manifest.json", 0o644, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err != nil {
		return m, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return m, err
	}
	if err := add("database.jsonl", 0o600, size, tmp); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	for _, name := range m.Files {
		if err := add("data/"+name, modes[name], int64(len(files[name])), bytes.NewReader(files[name])); err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	if err := enc.Close(); err != nil {
		return m, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// Restore reads a backup from r into an empty data directory and an empty
// database of the backup's kind.
func Restore(ctx context.Context, r io.Reader, st Store, dialect, dataDir, passphrase string, now time.Time) (Manifest, error) {
	var m Manifest
	if _, err := os.Stat(filepath.Join(dataDir, "ca")); err == nil {
		return m, pki.Errorf(pki.Conflict, "restore: %s already holds a CA; restore into an empty data directory", dataDir)
	}
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	dec, err := age.Decrypt(r, id)
	if err != nil {
		return m, pki.Wrap(pki.Unauthenticated, err, "restore: the backup cannot be decrypted (wrong passphrase, or not a fleetpki backup)")
	}
	tr := tar.NewReader(dec)
	next := func(want string) (*tar.Header, error) {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("restore: the backup ends early: %w", err)
		}
		if want != "" && h.Name != want {
			return nil, fmt.Errorf("restore: %s where %s was expected", h.Name, want)
		}
		return h, nil
	}
	if _, err := next("manifest.json"); err != nil {
		return m, err
	}
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil || m.Format != Format {
		return m, fmt.Errorf("restore: not a %s backup (%v)", Format, err)
	}
	if m.Dialect != dialect {
		return m, pki.Errorf(pki.Invalid, "restore: the backup is of a %s database; restore it into %s", m.Dialect, m.Dialect)
	}
	if _, err := next("database.jsonl"); err != nil {
		return m, err
	}
	if err := st.MigrateTo(ctx, m.SchemaVersion); err != nil {
		return m, err
	}
	gap := maxCRLsPerSecond*int64(max(0, now.Sub(m.Created).Seconds())) + 1000
	if err := st.Load(ctx, tr, gap); err != nil {
		return m, err
	}
	if err := st.Migrate(ctx); err != nil {
		return m, err
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "ca"), 0o700); err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
		name, ok := strings.CutPrefix(h.Name, "data/")
		if !ok || !contains(m.Files, name) || strings.Contains(name, "..") {
			return m, fmt.Errorf("restore: an unexpected entry %q", h.Name)
		}
		p := filepath.Join(dataDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return m, fmt.Errorf("restore: %w", err)
		}
		if err := os.WriteFile(p, b, os.FileMode(h.Mode).Perm()&0o644); err != nil { // key files keep 0600
			return m, fmt.Errorf("restore: %w", err)
		}
	}
	return m, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
