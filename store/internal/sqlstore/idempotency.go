package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// ClaimIdempotencyKey claims an idempotency key; see store.Store.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, c pki.IdempotencyClaim) (pki.Idempotency, pki.Serial, error) {
	credID, key, reqHash, now := c.CredentialID, c.Key, c.RequestHash, c.Now
	var state pki.Idempotency
	var serial pki.Serial
	err := s.inTx(ctx, "claim idempotency key", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (credential_id, key, request_hash, serial, created_at)
			VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING`, credID, key, reqHash, s.t(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			state = pki.IdempotencyClaimed
			return err
		}
		var hash []byte
		var done sql.NullString
		var created time.Time
		err = tx.QueryRowContext(ctx, `SELECT request_hash, serial, created_at FROM idempotency_keys
			WHERE credential_id = $1 AND key = $2 `+s.d.ForUpdate, credID, key).Scan(&hash, &done, timeCol{&created})
		if err != nil {
			return err
		}
		if created.Before(c.ExpireBefore) || (!done.Valid && created.Before(c.AbandonBefore)) {
			// An expired or abandoned key starts afresh.
			_, err := tx.ExecContext(ctx, `UPDATE idempotency_keys SET request_hash = $3, serial = NULL, created_at = $4
				WHERE credential_id = $1 AND key = $2`, credID, key, reqHash, s.t(now))
			state = pki.IdempotencyClaimed
			return err
		}
		if !bytes.Equal(hash, reqHash) {
			return pki.Errorf(pki.Conflict, "the idempotency key was used with a different request")
		}
		if done.Valid {
			state, serial = pki.IdempotencyDone, pki.Serial(done.String)
		} else {
			state = pki.IdempotencyInProgress
		}
		return nil
	})
	return state, serial, err
}

// CompleteIdempotencyKey records the serial issued under a key.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, credID, key string, serial pki.Serial) error {
	return s.inTx(ctx, "complete idempotency key", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE idempotency_keys SET serial = $3 WHERE credential_id = $1 AND key = $2`,
			credID, key, string(serial))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		return pki.Errorf(pki.NotFound, "no idempotency key %q", key)
	})
}

// ReleaseIdempotencyKey forgets a claimed, unfinished key.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, credID, key string) error {
	return s.inTx(ctx, "release idempotency key", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE credential_id = $1 AND key = $2 AND serial IS NULL`, credID, key)
		return err
	})
}
