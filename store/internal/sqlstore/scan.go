package sqlstore

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"
)

// The database's time precision: Postgres keeps microseconds, so both
// backends do, and a time reads back exactly as it was written.
const precision = time.Microsecond

func norm(t time.Time) time.Time { return t.UTC().Truncate(precision) }

// PostgresTime encodes a time for Postgres (timestamptz).
func PostgresTime(t time.Time) any { return norm(t) }

// SQLiteTime encodes a time for SQLite (INTEGER microseconds since the epoch).
func SQLiteTime(t time.Time) any { return norm(t).UnixMicro() }

func (s *Store) t(t time.Time) any { return s.d.Time(t) }

func (s *Store) tp(t *time.Time) any {
	if t == nil {
		return nil
	}
	return s.d.Time(*t)
}

// timeCol scans either encoding into a UTC time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*c.t = norm(v)
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("scan time: unexpected %T", src)
	}
	return nil
}

// nullTimeCol scans a nullable time into a *time.Time.
type nullTimeCol struct{ t **time.Time }

func (c nullTimeCol) Scan(src any) error {
	if src == nil {
		*c.t = nil
		return nil
	}
	var t time.Time
	if err := (timeCol{&t}).Scan(src); err != nil {
		return err
	}
	*c.t = &t
	return nil
}

// jsonCol scans a JSON column (jsonb or TEXT) into v.
type jsonCol struct{ v any }

func (c jsonCol) Scan(src any) error {
	var b []byte
	switch x := src.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		// A driver that decodes JSON itself: re-encode it.
		var err error
		if b, err = json.Marshal(x); err != nil {
			return fmt.Errorf("scan json: %w", err)
		}
	}
	if err := json.Unmarshal(b, c.v); err != nil {
		return fmt.Errorf("scan json: %w", err)
	}
	return nil
}

// jsonArg encodes v as a JSON text argument; nil maps become {}.
func jsonArg(v any) (driver.Value, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// boolCol scans a boolean stored as boolean (Postgres) or INTEGER (SQLite).
type boolCol struct{ b *bool }

func (c boolCol) Scan(src any) error {
	switch v := src.(type) {
	case bool:
		*c.b = v
	case int64:
		*c.b = v != 0
	default:
		return fmt.Errorf("scan bool: unexpected %T", src)
	}
	return nil
}
