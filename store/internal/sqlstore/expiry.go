package sqlstore

import (
	"context"
	"database/sql"

	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// QueueExpiryNotices records a pending notice for every valid certificate
// expiring after now and by before whose device holds none lasting longer
// (see pki.CertFilter.ExpiringBefore), once per certificate; it returns how
// many it added.
func (s *Store) QueueExpiryNotices(ctx context.Context, now, before time.Time) (int64, error) {
	var a args
	nowArg, beforeArg := a.add(s.t(now)), a.add(s.t(before))
	res, err := s.db.ExecContext(ctx, `INSERT INTO expiry_notices (serial, device_id, not_after, state, next_attempt, updated_at)
		SELECT c.serial, c.device_id, c.not_after, 'pending', `+nowArg+`, `+nowArg+` FROM certificates c
		WHERE c.status = 'valid' AND c.not_after > `+nowArg+` AND c.not_after <= `+beforeArg+`
			AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = c.device_id AND n.status = 'valid' AND n.not_after > `+beforeArg+`)
		ON CONFLICT (serial) DO NOTHING`, a...)
	if err != nil {
		return 0, s.wrap(err, "queue expiry notices")
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// ExpiryNotices lists notices in a state, due ones first (for pending:
// those whose next attempt is at or before due; a zero due lists all).
func (s *Store) ExpiryNotices(ctx context.Context, state pki.NoticeState, due time.Time, max int) ([]pki.ExpiryNotice, error) {
	n, err := limit(max)
	if err != nil {
		return nil, err
	}
	a := args{string(state)}
	q := `SELECT serial, device_id, not_after, state, attempts, next_attempt, last_error, updated_at FROM expiry_notices WHERE state = $1`
	if !due.IsZero() {
		q += " AND next_attempt <= " + a.add(s.t(due))
	}
	q += " ORDER BY next_attempt, serial LIMIT " + a.add(n)
	rows, err := s.rdb.QueryContext(ctx, q, a...)
	if err != nil {
		return nil, s.wrap(err, "list expiry notices")
	}
	defer rows.Close()
	var out []pki.ExpiryNotice
	for rows.Next() {
		var e pki.ExpiryNotice
		var serial, st string
		if err := rows.Scan(&serial, &e.DeviceID, timeCol{&e.NotAfter}, &st, &e.Attempts, timeCol{&e.NextAttempt}, &e.LastError, timeCol{&e.UpdatedAt}); err != nil {
			return nil, s.wrap(err, "list expiry notices")
		}
		e.Serial, e.State = pki.Serial(serial), pki.NoticeState(st)
		out = append(out, e)
	}
	return out, s.wrap(rows.Err(), "list expiry notices")
}

// UpdateExpiryNotice records an attempt's outcome.
func (s *Store) UpdateExpiryNotice(ctx context.Context, e pki.ExpiryNotice) error {
	return s.inTx(ctx, "update expiry notice", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE expiry_notices SET state = $1, attempts = $2, next_attempt = $3, last_error = $4, updated_at = $5
			WHERE serial = $6`, string(e.State), e.Attempts, s.t(e.NextAttempt), e.LastError, s.t(e.UpdatedAt), string(e.Serial))
		return err
	})
}

// CountExpiring counts the certificates pki.CertFilter.ExpiringBefore
// would list.
func (s *Store) CountExpiring(ctx context.Context, now, before time.Time) (int64, error) {
	var a args
	nowArg, beforeArg := a.add(s.t(now)), a.add(s.t(before))
	var n int64
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM certificates c
		WHERE c.status = 'valid' AND c.not_after > `+nowArg+` AND c.not_after <= `+beforeArg+`
			AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = c.device_id AND n.status = 'valid' AND n.not_after > `+beforeArg+`)`, a...).Scan(&n)
	return n, s.wrap(err, "count expiring certificates")
}
