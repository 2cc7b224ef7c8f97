package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// CreateWebSession stores a new admin UI session.
func (s *Store) CreateWebSession(ctx context.Context, ws pki.WebSession) error {
	return s.inTx(ctx, "create web session", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (id_hash, user_name, csrf, created_at, last_seen, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, ws.IDHash, ws.UserName, ws.CSRF, s.t(ws.CreatedAt), s.t(ws.LastSeen), s.t(ws.ExpiresAt))
		return err
	})
}

// GetWebSession returns the session with that id hash, or pki.NotFound.
func (s *Store) GetWebSession(ctx context.Context, idHash string) (pki.WebSession, error) {
	ws := pki.WebSession{IDHash: idHash}
	err := s.rdb.QueryRowContext(ctx, `SELECT user_name, csrf, created_at, last_seen, expires_at FROM web_sessions WHERE id_hash = $1`,
		idHash).Scan(&ws.UserName, &ws.CSRF, timeCol{&ws.CreatedAt}, timeCol{&ws.LastSeen}, timeCol{&ws.ExpiresAt})
	if errors.Is(err, sql.ErrNoRows) {
		return pki.WebSession{}, pki.Errorf(pki.NotFound, "no such session")
	}
	if err != nil {
		return pki.WebSession{}, s.wrap(err, "get web session")
	}
	return ws, nil
}

// TouchWebSession records activity on a session.
func (s *Store) TouchWebSession(ctx context.Context, idHash string, at time.Time) error {
	return s.inTx(ctx, "touch web session", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE web_sessions SET last_seen = $2 WHERE id_hash = $1`, idHash, s.t(at))
		return err
	})
}

// DeleteWebSession ends a session (logout); deleting a missing one is no error.
func (s *Store) DeleteWebSession(ctx context.Context, idHash string) error {
	return s.inTx(ctx, "delete web session", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE id_hash = $1 OR expires_at < $2`, idHash, s.t(time.Now()))
		return err
	})
}

// DeleteUserWebSessions ends every session of the user except the one whose
// id hash is keep (a password change ends the user's other sign-ins).
func (s *Store) DeleteUserWebSessions(ctx context.Context, userName, keep string) error {
	return s.inTx(ctx, "delete web sessions", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE user_name = $1 AND id_hash <> $2`, userName, keep)
		return err
	})
}

// Stats counts what the dashboard shows at now, with days days of issuance.
func (s *Store) Stats(ctx context.Context, now time.Time, days int) (pki.Stats, error) {
	var st pki.Stats
	now = now.UTC()
	today := now.Truncate(24 * time.Hour)
	counts := []struct {
		dst  *int64
		q    string
		args []any
	}{
		{&st.ActiveDevices, `SELECT count(*) FROM devices WHERE status = 'active'`, nil},
		{&st.IssuedToday, `SELECT count(*) FROM certificates WHERE created_at >= $1`, []any{s.t(today)}},
		{&st.IssuedWeek, `SELECT count(*) FROM certificates WHERE created_at >= $1`, []any{s.t(now.Add(-7 * 24 * time.Hour))}},
		{&st.Revoked, `SELECT count(*) FROM certificates WHERE status = 'revoked'`, nil},
		{&st.ExpiringSoon, `SELECT count(*) FROM certificates WHERE status = 'valid' AND not_after > $1 AND not_after <= $2`,
			[]any{s.t(now), s.t(now.Add(30 * 24 * time.Hour))}},
	}
	for _, c := range counts {
		if err := s.rdb.QueryRowContext(ctx, c.q, c.args...).Scan(c.dst); err != nil {
			return pki.Stats{}, s.wrap(err, "stats")
		}
	}
	for i := days - 1; i >= 0; i-- {
		day := today.Add(-time.Duration(i) * 24 * time.Hour)
		dc := pki.DayCount{Day: day}
		if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE created_at >= $1 AND created_at < $2`,
			s.t(day), s.t(day.Add(24*time.Hour))).Scan(&dc.Count); err != nil {
			return pki.Stats{}, s.wrap(err, "stats")
		}
		st.PerDay = append(st.PerDay, dc)
	}
	return st, nil
}
