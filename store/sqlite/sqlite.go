// Package sqlite is fleetpki's embedded, zero-setup store: a single SQLite
// file (pure Go, no cgo) in the data directory. It suits one fleetpki
// process; replicas must share Postgres instead.
//
// Policy: WAL journal with synchronous=FULL, because an issued certificate
// must survive a power cut once its caller has it; one connection writes
// (SQLite allows one writer, and waiting in Go beats SQLITE_BUSY), several read.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fleetpki/fleetpki/migrations"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/internal/sqlstore"
)

// Store is the SQLite store.
type Store struct {
	*sqlstore.Store
	db   *sql.DB
	opts store.Options
}

var _ store.Backend = (*Store)(nil)

var dialect = sqlstore.Dialect{
	Name: "sqlite",
	Time: sqlstore.SQLiteTime,
	MetadataMatch: func(arg func(any) string, key, value string) string {
		// Keys are restricted to [A-Za-z0-9._-] by pki.ValidateMetadata, so
		// quoting the key in the JSON path is safe.
		return "json_extract(metadata, " + arg(`$."`+key+`"`) + ") = " + arg(value)
	},
	IsUniqueViolation: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	},
	IsUnavailable: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			switch e.Code() & 0xff {
			case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_READONLY:
				return true
			}
		}
		return false
	},
}

func dsn(path string, write bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	if write {
		// Take the write lock at BEGIN, so a transaction never fails half way
		// when it upgrades from reading to writing.
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Open opens (creating if needed) the SQLite database at path and applies
// pending migrations unless opts.NoMigrate is set.
func Open(ctx context.Context, path string, opts store.Options) (*Store, error) {
	// The file holds password and token hashes: create it private (SQLite
	// gives its -wal and -shm files the same mode).
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		_ = f.Close()
	}
	w, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		_ = w.Close()
		return nil, pki.Wrap(pki.Unavailable, fmt.Errorf("open sqlite %s: %w", path, err), "the database cannot be opened")
	}
	s := &Store{db: w, opts: opts}
	migrate := s.Migrate
	if opts.NoMigrate {
		migrate = s.checkSchema
	}
	if err := migrate(ctx); err != nil {
		_ = w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	s.Store = sqlstore.New(w, r, dialect, opts.Logger)
	return s, nil
}

func (s *Store) provider() (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, migrations.SQLite(), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("sqlite migrations: %w", err)
	}
	return p, nil
}

// checkSchema refuses a database migrated by a newer fleetpki.
func (s *Store) checkSchema(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	return migrations.CheckNotNewer(ctx, p)
}

// MigrationStatus lists the known migrations, applied or pending, and the
// database's version.
func (s *Store) MigrationStatus(ctx context.Context) ([]migrations.Migration, int64, error) {
	p, err := s.provider()
	if err != nil {
		return nil, 0, err
	}
	return migrations.Status(ctx, p)
}

// Migrate applies pending migrations; a database newer than this binary
// is refused.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	if err := migrations.CheckNotNewer(ctx, p); err != nil {
		return err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("sqlite migrations: %w", err)
	}
	if s.opts.Logger != nil {
		for _, r := range res {
			s.opts.Logger.InfoContext(ctx, "migration applied", "dialect", "sqlite", "version", r.Source.Version, "duration", r.Duration)
		}
	}
	return nil
}

// MigrateTo applies the migrations up to version.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return fmt.Errorf("sqlite migrations: %w", err)
	}
	return nil
}
