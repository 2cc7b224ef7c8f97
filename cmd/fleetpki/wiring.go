package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// backend is a store that can also apply its migrations; both backends are one.
type backend interface {
	store.Store
	Migrate(ctx context.Context) error
}

var (
	_ backend = (*sqlite.Store)(nil)
	_ backend = (*postgres.Store)(nil)
)

// connectTimeout bounds reaching the database at start, so that an address
// that drops packets fails the start instead of hanging it.
const connectTimeout = 15 * time.Second

// openStore opens the configured store: Postgres when a database URL is
// set, otherwise SQLite in the data directory. Pending migrations are
// applied unless noMigrate is set.
func openStore(ctx context.Context, cfg *config, log *slog.Logger, noMigrate bool) (backend, error) {
	opts := store.Options{Logger: log, NoMigrate: true}
	octx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var (
		st  backend
		err error
	)
	if cfg.DatabaseURL == "" {
		st, err = openSQLite(octx, cfg.databasePath(), opts)
	} else {
		st, err = openPostgres(octx, cfg.DatabaseURL, opts)
	}
	if err != nil {
		return nil, databaseError(err)
	}
	// Migrations run outside the connect timeout: a large one may take longer.
	if !noMigrate {
		if err := st.Migrate(ctx); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
	}
	return st, nil
}

// openSQLite and openPostgres return the interface only on success, so a
// failed open never yields a non-nil interface holding a nil pointer.
func openSQLite(ctx context.Context, path string, opts store.Options) (backend, error) {
	s, err := sqlite.Open(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string, opts store.Options) (backend, error) {
	s, err := postgres.Open(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// databaseError shortens a failure to open the database to what an operator
// acts on: the store's caller-safe message and the network error, if any.
// Driver messages repeat themselves (pgx lists every address it tried).
func databaseError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("database: no answer within %s: %w", connectTimeout, err)
	}
	msg := pki.Message(err)
	if msg == "" {
		return fmt.Errorf("database: %w", err)
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		msg += ": " + ne.Error()
	}
	return conciseError{msg: "database: " + msg, err: err}
}

// conciseError shows msg but keeps err for errors.Is and errors.As.
type conciseError struct {
	msg string
	err error
}

func (e conciseError) Error() string { return e.msg }
func (e conciseError) Unwrap() error { return e.err }

// cliActor names the operating-system user running the command in the audit log.
func cliActor() pki.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return pki.Actor{Name: "cli:" + name}
}

// loadOrCreateCA loads the hierarchy from the data directory, or creates one
// with the configured key algorithm when there is none (first start). It
// reports whether it created the hierarchy.
func loadOrCreateCA(ctx context.Context, cfg *config, st store.Store, log *slog.Logger) (*ca.Hierarchy, bool, error) {
	h, err := ca.LoadHierarchy(ctx, cfg.DataDir, cfg.keyPassword)
	if err == nil {
		return h, false, nil
	}
	if !errors.Is(err, pki.NotFound) {
		return nil, false, err
	}
	log.InfoContext(ctx, "no CA in the data directory: creating one", "data_dir", cfg.DataDir, "key_algorithm", cfg.KeyAlgorithm)
	h, err = ca.Init(ctx, ca.InitOptions{DataDir: cfg.DataDir, Algorithm: ca.KeyAlgorithm(cfg.KeyAlgorithm), Password: cfg.keyPassword})
	if errors.Is(err, pki.Conflict) {
		// Another process sharing the data directory created it first: use theirs.
		h, err = ca.LoadHierarchy(ctx, cfg.DataDir, cfg.keyPassword)
		return h, false, err
	}
	if err != nil {
		return nil, false, err
	}
	if err := auditCAInit(ctx, st, h, "created", cfg.KeyAlgorithm); err != nil {
		return nil, false, err
	}
	warnUnencrypted(ctx, cfg, log)
	return h, true, nil
}

// warnDataDirMode warns when other users may enter the data directory: it
// holds the database (password and token hashes) and the admin password.
func warnDataDirMode(ctx context.Context, cfg *config, log *slog.Logger) {
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.WarnContext(ctx, "the data directory is accessible to other users; chmod 700 it", "data_dir", cfg.DataDir, "mode", fi.Mode().Perm().String())
	}
}

// warnUnencrypted says, once when the keys are written, that they are stored in the clear.
func warnUnencrypted(ctx context.Context, cfg *config, log *slog.Logger) {
	if len(cfg.keyPassword) == 0 {
		log.WarnContext(ctx, "the CA keys are stored unencrypted; set "+envKeyPassword+" or --key-password-file to encrypt them")
	}
}

// auditCAInit records the birth of a hierarchy. ca.Init and ca.Import only
// write files, so the audit event is written here, where the store is known.
func auditCAInit(ctx context.Context, st store.Store, h *ca.Hierarchy, how, algorithm string) error {
	details := map[string]string{"how": how, "root_subject": h.Root().Subject.String(),
		"intermediate_subject": h.Intermediate().Subject.String(), "issuer_key_id": h.IssuerKeyID()}
	if algorithm != "" {
		details["key_algorithm"] = algorithm
	}
	ev := pki.AuditEvent{Time: time.Now().UTC(), Actor: cliActor(), Action: pki.ActionCAInit,
		Target: "root-sha256:" + h.RootFingerprint(), Details: details}
	if err := st.AppendAudit(ctx, ev); err != nil {
		return fmt.Errorf("record the CA's creation in the audit log: %w", err)
	}
	return nil
}

// newCA builds the issuing CA over the hierarchy. Profiles are read from
// <data-dir>/profiles when that directory exists.
func newCA(ctx context.Context, cfg *config, h *ca.Hierarchy, st store.Store, log *slog.Logger) (*ca.CA, error) {
	dir := cfg.profilesDir()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		dir = ""
	}
	return ca.New(ctx, ca.Config{Hierarchy: h, Store: st, PublicURL: cfg.PublicURL, ProfilesDir: dir, Logger: log})
}

// adminUser is the user serve creates on first start.
const adminUser = "admin"

// ensureAdmin creates the admin user on first start, with a random password
// written to <data-dir>/admin-password (0600). The file is written before the
// user is created, so a crash in between leaves a password that the next
// start uses, never a user whose password nobody knows. When the user exists
// already (a restart, or another replica sharing the database) nothing changes.
func ensureAdmin(ctx context.Context, cfg *config, st store.Store, log *slog.Logger) error {
	_, err := st.GetUser(ctx, adminUser)
	if err == nil {
		log.InfoContext(ctx, "admin user exists", "user", adminUser)
		return nil
	}
	if !errors.Is(err, pki.NotFound) {
		return fmt.Errorf("look up the admin user: %w", err)
	}
	path := cfg.adminPasswordPath()
	password, wrote, err := readOrCreatePasswordFile(path)
	if err != nil {
		return err
	}
	_, err = ca.NewAccounts(st, nil).CreateUser(ctx, adminUser, pki.RoleAdmin, password, cliActor())
	if err != nil {
		if wrote {
			_ = os.Remove(path) // the password belongs to no user
		}
		if errors.Is(err, pki.Conflict) {
			log.InfoContext(ctx, "admin user was created by another process", "user", adminUser)
			return nil
		}
		return fmt.Errorf("create the admin user: %w", err)
	}
	log.InfoContext(ctx, "created the admin user; its password is in the file (delete the file once you have stored it elsewhere)",
		"user", adminUser, "password_file", path)
	return nil
}

// readOrCreatePasswordFile returns the password stored at path or, when the
// file does not exist, creates it (exclusively, 0600) with a random password.
func readOrCreatePasswordFile(path string) (password string, wrote bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return "", false, fmt.Errorf("%s is empty: delete it to have a new admin password generated", path)
		}
		return p, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read the admin password file: %w", err)
	}
	password = ca.RandomPassword()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("create the admin password file: %w", err)
	}
	_, err = f.WriteString(password + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", false, fmt.Errorf("write the admin password file: %w", err)
	}
	return password, true, nil
}

// knownProfiles returns the names of the profiles the CA in the data
// directory would accept.
func knownProfiles(ctx context.Context, cfg *config, st store.Store, log *slog.Logger) ([]string, error) {
	h, err := ca.LoadHierarchy(ctx, cfg.DataDir, cfg.keyPassword)
	if errors.Is(err, pki.NotFound) {
		return nil, fmt.Errorf("no CA in %s yet: run 'fleetpki init' or 'fleetpki serve' first: %w", cfg.DataDir, err)
	}
	if err != nil {
		return nil, err
	}
	authority, err := newCA(ctx, cfg, h, st, log)
	if err != nil {
		return nil, err
	}
	return authority.Profiles(), nil
}
