// Package backends opens the configured store: PostgreSQL when a database
// URL is given, otherwise the embedded SQLite file. It is the one place
// that knows both backends, so that the composition root names neither.
package backends

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// ConnectTimeout bounds reaching the database at start, so that an address
// that drops packets fails the start instead of hanging it.
const ConnectTimeout = 15 * time.Second

// Open opens Postgres at databaseURL, or SQLite at sqlitePath when it is
// empty, and applies pending migrations unless opts.NoMigrate is set. Its
// errors are short and caller-safe: they never echo the URL (it may hold a
// password).
func Open(ctx context.Context, databaseURL, sqlitePath string, opts store.Options) (store.Backend, error) {
	noMigrate := opts.NoMigrate
	opts.NoMigrate = true
	octx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	defer cancel()
	var (
		st  store.Backend
		err error
	)
	if databaseURL == "" {
		var s *sqlite.Store
		if s, err = sqlite.Open(octx, sqlitePath, opts); err == nil {
			st = s
		}
	} else {
		var s *postgres.Store
		if s, err = postgres.Open(octx, databaseURL, opts); err == nil {
			st = s
		}
	}
	if err != nil {
		return nil, concise(err)
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

// concise shortens a failure to open the database to what an operator acts
// on: the store's caller-safe message and the network error, if any.
// Driver messages repeat themselves (pgx lists every address it tried).
func concise(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("database: no answer within %s: %w", ConnectTimeout, err)
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
