// Package postgres is fleetpki's production store: PostgreSQL through a
// pgx/v5 connection pool. Several fleetpki processes may share one database;
// migrations take a session advisory lock, and the audit chain's head row is
// locked by every transaction that appends to it.
package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/fleetpki/fleetpki/migrations"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/internal/sqlstore"
)

// Store is the PostgreSQL store.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
	// lookups is the OCSP responder's pool: its one query runs with a
	// generic plan (planning it anew each time cost more than running it).
	lookups *pgxpool.Pool
	db      *sql.DB
	opts    store.Options
}

var _ store.Backend = (*Store)(nil)

var dialect = sqlstore.Dialect{
	Name:        "postgres",
	ForUpdate:   "FOR UPDATE",
	WritableCTE: true,
	Time:        sqlstore.PostgresTime,
	AfterLoad: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('certificates', 'seq'), COALESCE(MAX(seq), 0) + 1, false) FROM certificates`)
		return err
	},
	InList: func(arg func(any) string, column string, values []string) string {
		return column + " = ANY(" + arg(values) + "::text[])"
	},
	MetadataMatch: func(arg func(any) string, key, value string) string {
		// Containment is what the GIN (jsonb_path_ops) index answers.
		b, _ := json.Marshal(map[string]string{key: value})
		return "metadata @> " + arg(string(b)) + "::jsonb"
	},
	IsUniqueViolation: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
	IsUnavailable: isUnavailable,
	IsBadText: func(err error) bool {
		// 22021 character_not_in_repertoire (NUL, invalid UTF-8), 22P05
		// untranslatable_character.
		var e *pgconn.PgError
		return errors.As(err, &e) && (e.Code == "22021" || e.Code == "22P05")
	},
	NotifyRevoked: notifyRevoked,
}

func isUnavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P0x: server shutting down; 53: insufficient resources.
		return len(pe.Code) == 5 && (pe.Code[:2] == "08" || pe.Code[:4] == "57P0" || pe.Code[:2] == "53")
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err)
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string), checks it answers, and applies pending migrations unless
// opts.NoMigrate is set.
func Open(ctx context.Context, dsn string, opts store.Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the URL with its password: do not wrap it.
		return nil, pki.Errorf(pki.Invalid, "the database URL is not valid")
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgxpool's default (4 on this kind of machine) queues API reads
		// behind each other under load; Postgres's default limit is 100.
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, pki.Wrap(pki.Unavailable, fmt.Errorf("postgres %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err),
			fmt.Sprintf("the database at %s:%d cannot be reached", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	}
	lcfg := cfg.Copy()
	lcfg.MaxConns = 4
	lcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	lookups, err := pgxpool.NewWithConfig(ctx, lcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{pool: pool, lookups: lookups, db: db, opts: opts}
	migrate := s.Migrate
	if opts.NoMigrate {
		migrate = s.checkSchema
	}
	if err := migrate(ctx); err != nil {
		_ = db.Close()
		pool.Close()
		lookups.Close()
		return nil, err
	}
	s.Store = sqlstore.New(db, db, dialect, opts.Logger)
	return s, nil
}

// Pool returns the underlying pgx pool (for LISTEN/NOTIFY and the like).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the store and its pool.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	s.lookups.Close()
	return err
}

func (s *Store) provider(withLock bool) (*goose.Provider, error) {
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if withLock {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("postgres migrations: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, s.db, migrations.Postgres(), opts...)
	if err != nil {
		return nil, fmt.Errorf("postgres migrations: %w", err)
	}
	return p, nil
}

// checkSchema refuses a database migrated by a newer fleetpki.
func (s *Store) checkSchema(ctx context.Context) error {
	p, err := s.provider(false)
	if err != nil {
		return err
	}
	return migrations.CheckNotNewer(ctx, p)
}

// MigrationStatus lists the known migrations, applied or pending, and the
// database's version.
func (s *Store) MigrationStatus(ctx context.Context) ([]migrations.Migration, int64, error) {
	p, err := s.provider(false)
	if err != nil {
		return nil, 0, err
	}
	return migrations.Status(ctx, p)
}

// Migrate applies pending migrations under a session advisory lock, so
// replicas starting together migrate once; a database newer than this
// binary is refused.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider(true)
	if err != nil {
		return err
	}
	if err := migrations.CheckNotNewer(ctx, p); err != nil {
		return err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("postgres migrations: %w", err)
	}
	if s.opts.Logger != nil {
		for _, r := range res {
			s.opts.Logger.InfoContext(ctx, "migration applied", "dialect", "postgres", "version", r.Source.Version, "duration", r.Duration)
		}
	}
	return nil
}

// LookupOCSP is sqlstore's lookup run on pgx directly (binary results, one
// prepared statement for every batch size, no database/sql in between):
// it is the OCSP responder's cold path.
func (s *Store) LookupOCSP(ctx context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error) {
	out := make(map[pki.Serial]pki.OCSPLookup, len(serials))
	if len(serials) == 0 {
		return out, nil
	}
	values := make([]string, len(serials))
	for i, sr := range serials {
		values[i] = string(sr)
	}
	rows, err := s.lookups.Query(ctx, `SELECT c.serial, c.status, c.revoked_at, c.reason, o.status, o.der, o.this_update, o.next_update
		FROM certificates c LEFT JOIN ocsp_responses o ON o.serial = c.serial AND o.hash = $1
		WHERE c.serial = ANY($2::text[])`, hash, values)
	if err != nil {
		return nil, lookupErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var serial, status string
		var rstatus *string
		var reason int16
		var l pki.OCSPLookup
		var this, next *time.Time
		if err := rows.Scan(&serial, &status, &l.RevokedAt, &reason, &rstatus, &l.Response.DER, &this, &next); err != nil {
			return nil, lookupErr(err)
		}
		l.Status, l.Reason = pki.CertStatus(status), pki.RevocationReason(reason)
		if rstatus != nil && this != nil && next != nil {
			l.Response.Serial, l.Response.Hash, l.Response.Status = pki.Serial(serial), hash, pki.CertStatus(*rstatus)
			l.Response.ThisUpdate, l.Response.NextUpdate = this.UTC(), next.UTC()
		} else {
			l.Response.DER = nil
		}
		if l.RevokedAt != nil {
			t := l.RevokedAt.UTC()
			l.RevokedAt = &t
		}
		out[pki.Serial(serial)] = l
	}
	if err := rows.Err(); err != nil {
		return nil, lookupErr(err)
	}
	return out, nil
}

func lookupErr(err error) error {
	if isUnavailable(err) {
		return pki.Wrap(pki.Unavailable, err, "the database cannot be reached")
	}
	return fmt.Errorf("postgres: look up OCSP status: %w", err)
}

// MigrateTo applies the migrations up to version.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	p, err := s.provider(true)
	if err != nil {
		return err
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return fmt.Errorf("postgres migrations: %w", err)
	}
	return nil
}
