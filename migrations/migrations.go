// Package migrations holds fleetpki's SQL schema, one goose migration folder
// per dialect, embedded into the binary. Migrations only ever move forward
// in production; each file keeps a Down section for development.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Postgres returns the PostgreSQL migrations.
func Postgres() fs.FS { return sub("postgres") }

// SQLite returns the SQLite migrations.
func SQLite() fs.FS { return sub("sqlite") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time; this cannot fail
	}
	return f
}

// Migration is one schema version and whether the database has it.
type Migration struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// Status lists every migration this binary knows and whether the database
// has applied it, and returns the database's version (which may be newer
// than any this binary knows).
func Status(ctx context.Context, p *goose.Provider) ([]Migration, int64, error) {
	st, err := p.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("migration status: %w", err)
	}
	out := make([]Migration, 0, len(st))
	for _, s := range st {
		out = append(out, Migration{Version: s.Source.Version, Name: filepath.Base(s.Source.Path),
			Applied: s.State == goose.StateApplied, AppliedAt: s.AppliedAt})
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("migration status: %w", err)
	}
	return out, v, nil
}

// ErrNewerSchema: the database was migrated by a newer fleetpki.
var ErrNewerSchema = errors.New("the database schema is newer than this fleetpki")

// CheckNotNewer refuses a database whose schema is newer than every
// migration this binary knows: running on it could corrupt what a newer
// release wrote.
func CheckNotNewer(ctx context.Context, p *goose.Provider) error {
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	var known int64
	for _, s := range p.ListSources() {
		known = max(known, s.Version)
	}
	if v > known {
		return fmt.Errorf("%w: the database is at version %d, this binary knows versions up to %d; run the fleetpki that migrated it (or a newer one)",
			ErrNewerSchema, v, known)
	}
	return nil
}

// WriteStatus prints the migrations as a table (tab-separated) and returns
// how many are pending.
func WriteStatus(w io.Writer, ms []Migration) int {
	fmt.Fprintln(w, "VERSION\tSTATE\tAPPLIED_AT\tMIGRATION")
	pending := 0
	for _, m := range ms {
		state, at := "pending", "-"
		if m.Applied {
			state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
		} else {
			pending++
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", m.Version, state, at, m.Name)
	}
	return pending
}
