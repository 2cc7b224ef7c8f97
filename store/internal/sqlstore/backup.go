package sqlstore

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// backupTables are every table of the schema that holds state, in an order
// that satisfies the foreign keys on load (users before their tokens and
// sessions; devices before certificates, which defer theirs anyway).
var backupTables = []string{"users", "api_tokens", "web_sessions", "credentials", "devices", "certificates",
	"audit_events", "audit_head", "crl_numbers", "crls", "idempotency_keys", "ocsp_responses", "revocation_jobs", "expiry_notices"}

// dumpLine is one line of a dump: a table's header (Table, Columns) or one
// of its rows (Row, typed cells).
type dumpLine struct {
	Table   string     `json:"table,omitempty"`
	Columns []string   `json:"columns,omitempty"`
	Row     [][]string `json:"row,omitempty"`
}

// cell encodes a driver value with its type, so that a load gives the
// driver back exactly what it read: "n" null, "i" integer, "f" float, "s"
// text, "b" bytes (base64), "t" time, "B" bool, "j" JSON.
func cell(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return []string{"n"}, nil
	case int64:
		return []string{"i", strconv.FormatInt(x, 10)}, nil
	case int32:
		return []string{"i", strconv.FormatInt(int64(x), 10)}, nil
	case int16:
		return []string{"i", strconv.FormatInt(int64(x), 10)}, nil
	case float64:
		return []string{"f", strconv.FormatFloat(x, 'g', -1, 64)}, nil
	case string:
		return []string{"s", x}, nil
	case []byte:
		return []string{"b", base64.StdEncoding.EncodeToString(x)}, nil
	case time.Time:
		return []string{"t", x.Format(time.RFC3339Nano)}, nil
	case bool:
		return []string{"B", strconv.FormatBool(x)}, nil
	case map[string]any, []any:
		b, err := json.Marshal(x)
		return []string{"j", string(b)}, err
	}
	return nil, fmt.Errorf("backup: a value of type %T", v)
}

func uncell(c []string) (any, error) {
	if len(c) == 0 || (c[0] != "n" && len(c) != 2) {
		return nil, errors.New("backup: a malformed cell")
	}
	switch c[0] {
	case "n":
		return nil, nil
	case "i":
		return strconv.ParseInt(c[1], 10, 64)
	case "f":
		return strconv.ParseFloat(c[1], 64)
	case "s", "j":
		return c[1], nil
	case "b":
		return base64.StdEncoding.DecodeString(c[1])
	case "t":
		return time.Parse(time.RFC3339Nano, c[1])
	case "B":
		return strconv.ParseBool(c[1])
	}
	return nil, fmt.Errorf("backup: a cell of type %q", c[0])
}

// Dump writes every row of every table as JSON lines, all read in one
// snapshot (a read-only repeatable-read transaction on Postgres; one read
// transaction over the WAL on SQLite), while the database keeps serving.
func (s *Store) Dump(ctx context.Context, w io.Writer) (store.DumpInfo, error) {
	info := store.DumpInfo{Rows: map[string]int64{}, CRLNumbers: map[string]int64{}}
	opts := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	if s.d.Name == "sqlite" {
		opts = nil // a read transaction in WAL mode is a snapshot already
	}
	tx, err := s.rdb.BeginTx(ctx, opts)
	if err != nil {
		return info, s.wrap(err, "backup")
	}
	defer func() { _ = tx.Rollback() }()
	enc := json.NewEncoder(w)
	for _, table := range backupTables {
		n, err := dumpTable(ctx, tx, enc, table)
		if err != nil {
			return info, err
		}
		info.Rows[table] = n
	}
	rows, err := tx.QueryContext(ctx, `SELECT issuer_key_id, number FROM crl_numbers`)
	if err != nil {
		return info, s.wrap(err, "backup")
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return info, s.wrap(err, "backup")
		}
		info.CRLNumbers[k] = n
	}
	return info, s.wrap(rows.Err(), "backup")
}

func dumpTable(ctx context.Context, tx *sql.Tx, enc *json.Encoder, table string) (int64, error) {
	rows, err := tx.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		return 0, fmt.Errorf("backup %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("backup %s: %w", table, err)
	}
	if err := enc.Encode(dumpLine{Table: table, Columns: cols}); err != nil {
		return 0, err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("backup %s: %w", table, err)
		}
		line := dumpLine{Row: make([][]string, len(cols))}
		for i, v := range vals {
			if line.Row[i], err = cell(v); err != nil {
				return n, fmt.Errorf("backup %s.%s: %w", table, cols[i], err)
			}
		}
		if err := enc.Encode(line); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// Load reads a dump into this database, which must be migrated to the
// dump's schema version and hold no users, devices or certificates; it
// all happens in one transaction. Every CRL number is then raised by
// crlGap, so that no number published after the dump is used again.
func (s *Store) Load(ctx context.Context, r io.Reader, crlGap int64) error {
	return s.inTx(ctx, "restore", func(tx *sql.Tx) error {
		for _, t := range []string{"users", "devices", "certificates", "audit_events"} {
			var n int64
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return pki.Errorf(pki.Conflict, "restore: the database is not empty (%d rows in %s)", n, t)
			}
		}
		// Rows the migrations seed (the audit chain's head) give way to the dump's.
		if _, err := tx.ExecContext(ctx, "DELETE FROM audit_head"); err != nil {
			return err
		}
		dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
		var stmt *sql.Stmt
		var table string
		for {
			var line dumpLine
			if err := dec.Decode(&line); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("restore: the dump: %w", err)
			}
			if line.Table != "" {
				if !knownTable(line.Table) {
					return fmt.Errorf("restore: the dump has a table %q this fleetpki does not know", line.Table)
				}
				if stmt != nil {
					_ = stmt.Close()
				}
				marks := make([]string, len(line.Columns))
				for i := range marks {
					marks[i] = "$" + strconv.Itoa(i+1)
				}
				var err error
				table = line.Table
				stmt, err = tx.PrepareContext(ctx, "INSERT INTO "+table+" ("+strings.Join(line.Columns, ", ")+") VALUES ("+strings.Join(marks, ", ")+")")
				if err != nil {
					return fmt.Errorf("restore %s: %w", table, err)
				}
				continue
			}
			if stmt == nil {
				return errors.New("restore: a row before its table")
			}
			args := make([]any, len(line.Row))
			for i, c := range line.Row {
				v, err := uncell(c)
				if err != nil {
					return fmt.Errorf("restore %s: %w", table, err)
				}
				args[i] = v
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("restore %s: %w", table, err)
			}
		}
		if stmt != nil {
			_ = stmt.Close()
		}
		if _, err := tx.ExecContext(ctx, "UPDATE crl_numbers SET number = number + $1", crlGap); err != nil {
			return err
		}
		if s.d.AfterLoad != nil {
			return s.d.AfterLoad(ctx, tx)
		}
		return nil
	})
}

func knownTable(t string) bool {
	for _, k := range backupTables {
		if k == t {
			return true
		}
	}
	return false
}
