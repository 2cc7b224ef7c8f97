// Package sqlstore is the one implementation of store.Store over
// database/sql, shared by the PostgreSQL and SQLite backends. The few places
// where the two SQL dialects differ (time encoding, row locks, JSON queries,
// error codes) are the Dialect's hooks; everything else is one code path, so
// both backends behave the same by construction and the conformance suite
// checks it.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Dialect describes how one database differs from the common SQL.
type Dialect struct {
	// Name is "postgres" or "sqlite", for errors and logs.
	Name string
	// ForUpdate is appended to a SELECT that must lock the rows it reads
	// ("FOR UPDATE" on Postgres; "" on SQLite, where a write transaction
	// already holds the database's single write lock).
	ForUpdate string
	// Time encodes a time for a query argument.
	Time func(time.Time) any
	// MetadataMatch returns a WHERE condition selecting devices whose
	// metadata has key = value; arg binds a value and returns its placeholder.
	MetadataMatch func(arg func(any) string, key, value string) string
	// InList, when set, returns a condition "column is one of values" with
	// one parameter (Postgres: = ANY($n), one plan for every list length);
	// else the condition is column IN ($a, $b, …).
	InList func(arg func(any) string, column string, values []string) string
	// AfterLoad, when set, runs at the end of a restore's transaction (e.g.
	// moving Postgres's sequences past the restored rows).
	AfterLoad func(ctx context.Context, tx *sql.Tx) error
	// IsUniqueViolation reports whether err is a unique-constraint violation.
	IsUniqueViolation func(error) bool
	// WritableCTE says the database runs INSERT/UPDATE inside WITH and has
	// the fleetpki_assert function, enabling the one-statement group insert.
	WritableCTE bool
	// NotifyRevoked, when set, tells other processes sharing the database
	// about revocations, inside the revoking transaction (so only committed
	// revocations are told): Postgres NOTIFY.
	NotifyRevoked func(ctx context.Context, tx *sql.Tx, serials []pki.Serial) error
	// IsUnavailable reports whether err means the database cannot be reached.
	IsUnavailable func(error) bool
	// IsBadText, when set, reports whether err is the database refusing
	// text it cannot store (NUL, invalid UTF-8): the caller's input, not
	// our fault. The HTTP edge refuses such text first; this is the backstop.
	IsBadText func(error) bool
}

// Store implements store.Store.
type Store struct {
	db  *sql.DB // writes (and reads on Postgres)
	rdb *sql.DB // reads; may be db
	d   Dialect
	log *slog.Logger

	// head is the audit chain head this process wrote last; only the
	// insert loop reads or writes it.
	head      *chainHead
	inserts   chan *insertReq
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a Store over db (for writes) and rdb (for reads; pass db
// again when one pool serves both). It starts the goroutine that commits
// certificate insertions in groups; Close stops it.
func New(db, rdb *sql.DB, d Dialect, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{db: db, rdb: rdb, d: d, log: log,
		inserts: make(chan *insertReq, maxBatch),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.insertLoop()
	return s
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return s.wrap(err, "ping")
	}
	return nil
}

// Close stops the insert loop and closes the database handles.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		err = s.db.Close()
		if s.rdb != s.db {
			err = errors.Join(err, s.rdb.Close())
		}
	})
	return err
}

// wrap adds context to a database error and classifies it: a connection
// failure becomes pki.Unavailable; domain errors pass through unchanged.
func (s *Store) wrap(err error, op string) error {
	if err == nil {
		return nil
	}
	if pki.KindOf(err) != nil {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", s.d.Name, op, err)
	}
	if s.d.IsUnavailable(err) {
		return pki.Wrap(pki.Unavailable, fmt.Errorf("%s %s: %w", s.d.Name, op, err), "the database is unavailable")
	}
	if s.d.IsBadText != nil && s.d.IsBadText(err) {
		return pki.Wrap(pki.Invalid, fmt.Errorf("%s %s: %w", s.d.Name, op, err), "the request holds a NUL character or invalid UTF-8")
	}
	return fmt.Errorf("%s %s: %w", s.d.Name, op, err)
}

// inTx runs fn in a write transaction and commits it, or rolls back on error.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(err, op+": begin")
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.wrap(err, op)
	}
	if err := tx.Commit(); err != nil {
		return s.wrap(err, op+": commit")
	}
	return nil
}

// args collects query arguments and hands out their $n placeholders.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return fmt.Sprintf("$%d", len(*a))
}
