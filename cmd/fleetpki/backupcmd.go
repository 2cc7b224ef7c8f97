package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/internal/atomicfile"
	"github.com/fleetpki/fleetpki/internal/backup"
	"github.com/fleetpki/fleetpki/internal/config"
)

// envBackupPassphrase carries the backup passphrase, so that it need not
// appear in the process list.
const envBackupPassphrase = "FLEETPKI_BACKUP_PASSPHRASE"

func (c *cli) backupCmd(ctx context.Context, args []string) error {
	return c.backupRestore(ctx, "backup", args)
}

func (c *cli) restoreCmd(ctx context.Context, args []string) error {
	return c.backupRestore(ctx, "restore", args)
}

// backupRestore writes an encrypted, consistent backup while serve runs
// (backup), or restores one into an empty data directory and database
// and verifies the audit chain (restore).
func (c *cli) backupRestore(ctx context.Context, name string, args []string) error {
	what := openStoreOnly // a backup is of the current schema
	if name == "restore" {
		what = openStoreNoMigr // a restore migrates to the backup's schema first
	}
	return c.storeCommandAs(ctx, name, args, what, func(fs *flag.FlagSet) (func() error, func(context.Context, *env) error) {
		file := fs.String(map[string]string{"backup": "out", "restore": "in"}[name], "", "the backup file (required)")
		passFile := fs.String("passphrase-file", "", "file holding the backup's passphrase (or set "+envBackupPassphrase+")")
		var pass string
		check := func() (err error) {
			pass, err = config.ReadSecret(*passFile, c.lookupEnv, envBackupPassphrase)
			if err != nil || *file == "" || pass == "" {
				return usageError{fmt.Errorf("%s: the file and a passphrase (--passphrase-file or %s) are required", name, envBackupPassphrase)}
			}
			return nil
		}
		return check, func(ctx context.Context, e *env) error {
			if name == "backup" {
				f, err := atomicfile.Create(*file, 0o600)
				if err != nil {
					return err
				}
				defer f.Abort()
				m, err := backup.Write(ctx, f, e.st, e.cfg.Dialect(), e.cfg.DataDir, pass, time.Now())
				if err == nil {
					err = f.Commit()
				}
				if err == nil {
					fmt.Fprintf(c.stderr, "Backed up schema %d: %d certificates, %d audit events, %d files (KMS keys referenced, not copied: %v).\n",
						m.SchemaVersion, m.Dump.Rows["certificates"], m.Dump.Rows["audit_events"], len(m.Files), m.KMS)
				}
				return err
			}
			f, err := os.Open(*file)
			if err != nil {
				return fmt.Errorf("--in: %w", config.UnwrapPath(err))
			}
			defer f.Close()
			m, err := backup.Restore(ctx, f, e.st, e.cfg.Dialect(), e.cfg.DataDir, pass, time.Now())
			if err != nil {
				return err
			}
			if n, err := audit.New(e.st, nil).Verify(ctx); err != nil {
				return errors.Join(fmt.Errorf("restore: the audit log does not verify after %d events", n), err)
			}
			fmt.Fprintf(c.stderr, "Restored the backup of %s (%d certificates); audit chain verified, CRL numbers raised.\n",
				m.Created.Format(time.RFC3339), m.Dump.Rows["certificates"])
			return nil
		}
	})
}
