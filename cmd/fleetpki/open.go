package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/backends"
)

// env is what a command has opened: the configuration, the logger, the
// store and (when asked for) the CA. close releases the store.
type env struct {
	cfg *config.Config
	log *slog.Logger
	st  store.Backend
	h   *ca.Hierarchy
	ca  *ca.CA
}

func (e *env) close() {
	if e.h != nil {
		_ = e.h.Close() // a KMS session
	}
	_ = e.st.Close()
}

// openWhat says what a command needs opened besides the store.
type openWhat int

const (
	openStoreOnly   openWhat = iota
	openStoreNoMigr          // the store as it is, without migrating
	openCA                   // the store and the CA of the data directory
	openCreateCA             // the store and the CA, created on first start
)

// open opens what a command needs after its flags are parsed and checked
// (c.start): the store (migrated unless asked not to) and, when asked,
// the CA. It is the opening every command shares.
func (c *cli) open(ctx context.Context, cfg *config.Config, log *slog.Logger, what openWhat) (*env, error) {
	st, err := backends.Open(ctx, cfg.DatabaseURL, cfg.DatabasePath(), store.Options{Logger: log, NoMigrate: what == openStoreNoMigr})
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, log: log, st: st}
	if what == openCA || what == openCreateCA {
		if err := e.openCA(ctx, what == openCreateCA); err != nil {
			st.Close()
			return nil, err
		}
	}
	return e, nil
}

// openCA loads the hierarchy (creating it when create is set and there is
// none) and builds the CA; profiles come from <data-dir>/profiles if it exists.
func (e *env) openCA(ctx context.Context, create bool) error {
	cfg := e.cfg
	var err error
	if create {
		var created bool
		e.h, created, err = ca.LoadOrInit(ctx, ca.InitOptions{DataDir: cfg.DataDir, Algorithm: ca.KeyAlgorithm(cfg.KeyAlgorithm),
			Password: cfg.KeyPassword, KMS: cfg.KMS()})
		if err != nil {
			return err
		}
		if created {
			e.log.InfoContext(ctx, "no CA in the data directory: created one", "data_dir", cfg.DataDir, "key_algorithm", cfg.KeyAlgorithm)
			if err := e.st.AppendAudit(ctx, ca.InitEvent(e.h, "created", cfg.KeyAlgorithm, cliActor(), time.Now())); err != nil {
				return fmt.Errorf("record the CA's creation in the audit log: %w", err)
			}
			warnUnencrypted(ctx, cfg, e.log)
		}
	} else if e.h, err = ca.LoadHierarchyWith(ctx, cfg.DataDir, ca.Secrets{Password: cfg.KeyPassword, PIN: cfg.KMS().PIN}); errors.Is(err, pki.NotFound) {
		return fmt.Errorf("no CA in %s yet: run 'fleetpki init' or 'fleetpki serve' first: %w", cfg.DataDir, err)
	} else if err != nil {
		return err
	}
	dir := cfg.ProfilesDir()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		dir = ""
	}
	e.ca, err = ca.New(ctx, ca.Config{Hierarchy: e.h, Store: e.st, Bulk: e.st, PublicURL: cfg.PublicURL, ProfilesDir: dir, Logger: e.log})
	return err
}

// cliActor names the operating-system user running the command in the audit log.
func cliActor() pki.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return pki.Actor{Name: "cli:" + name}
}

// warnDataDirMode warns when other users may enter the data directory: it
// holds the database (password and token hashes) and the admin password.
func warnDataDirMode(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.WarnContext(ctx, "the data directory is accessible to other users; chmod 700 it", "data_dir", cfg.DataDir, "mode", fi.Mode().Perm().String())
	}
}

// warnUnencrypted says, once when the keys are written, that they are stored in the clear.
func warnUnencrypted(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	if len(cfg.KeyPassword) == 0 && cfg.KMSURI == "" {
		log.WarnContext(ctx, "the CA keys are stored unencrypted; set "+config.EnvKeyPassword+" or --key-password-file to encrypt them")
	}
}
