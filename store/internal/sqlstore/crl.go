package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/fleetpki/fleetpki/pki"
)

// SaveCRL stores a CRL unless a newer one is stored; the conditional upsert
// keeps CRL numbers moving forward even when replicas race.
func (s *Store) SaveCRL(ctx context.Context, c pki.CRL) (bool, error) {
	var saved bool
	err := s.inTx(ctx, "save CRL", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO crls (issuer_key_id, number, der, this_update, next_update)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (issuer_key_id) DO UPDATE SET number = excluded.number, der = excluded.der,
				this_update = excluded.this_update, next_update = excluded.next_update
			WHERE crls.number < excluded.number`,
			c.IssuerKeyID, c.Number, c.DER, s.t(c.ThisUpdate), s.t(c.NextUpdate))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		saved = n == 1
		return err
	})
	return saved, err
}

// LatestCRL returns the issuer's latest stored CRL.
func (s *Store) LatestCRL(ctx context.Context, issuerKeyID string) (pki.CRL, error) {
	c := pki.CRL{IssuerKeyID: issuerKeyID}
	err := s.rdb.QueryRowContext(ctx, `SELECT number, der, this_update, next_update FROM crls WHERE issuer_key_id = $1`,
		issuerKeyID).Scan(&c.Number, &c.DER, timeCol{&c.ThisUpdate}, timeCol{&c.NextUpdate})
	if errors.Is(err, sql.ErrNoRows) {
		return pki.CRL{}, pki.Errorf(pki.NotFound, "no CRL for issuer %s", issuerKeyID)
	}
	if err != nil {
		return pki.CRL{}, s.wrap(err, "latest CRL")
	}
	return c, nil
}

// LatestCRLNumber returns the number of the issuer's latest stored CRL, 0 if none.
func (s *Store) LatestCRLNumber(ctx context.Context, issuerKeyID string) (int64, error) {
	var n int64
	err := s.rdb.QueryRowContext(ctx, `SELECT number FROM crls WHERE issuer_key_id = $1`, issuerKeyID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.wrap(err, "latest CRL number")
	}
	return n, nil
}
