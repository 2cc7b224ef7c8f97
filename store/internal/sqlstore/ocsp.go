package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// SaveOCSPResponses stores pre-signed responses in one transaction. A
// response never replaces a revoked one with another status: a slow signer
// racing a revocation cannot bring "good" back.
func (s *Store) SaveOCSPResponses(ctx context.Context, rs []pki.OCSPResponse) error {
	if len(rs) == 0 {
		return nil
	}
	return s.inTx(ctx, "save OCSP responses", func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO ocsp_responses (serial, hash, status, der, this_update, next_update)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (serial, hash) DO UPDATE SET status = excluded.status, der = excluded.der,
				this_update = excluded.this_update, next_update = excluded.next_update
			WHERE ocsp_responses.status <> 'revoked' OR excluded.status = 'revoked'`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range rs {
			if _, err := stmt.ExecContext(ctx, string(r.Serial), r.Hash, string(r.Status), r.DER, s.t(r.ThisUpdate), s.t(r.NextUpdate)); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetOCSPResponse returns the stored response for a serial and CertID hash.
func (s *Store) GetOCSPResponse(ctx context.Context, serial pki.Serial, hash string) (pki.OCSPResponse, error) {
	r := pki.OCSPResponse{Serial: serial, Hash: hash}
	var status string
	err := s.rdb.QueryRowContext(ctx, `SELECT status, der, this_update, next_update FROM ocsp_responses WHERE serial = $1 AND hash = $2`,
		string(serial), hash).Scan(&status, &r.DER, timeCol{&r.ThisUpdate}, timeCol{&r.NextUpdate})
	if errors.Is(err, sql.ErrNoRows) {
		return pki.OCSPResponse{}, pki.Errorf(pki.NotFound, "no stored OCSP response for %s (%s)", serial, hash)
	}
	if err != nil {
		return pki.OCSPResponse{}, s.wrap(err, "get OCSP response")
	}
	r.Status = pki.CertStatus(status)
	return r, nil
}

// OCSPStale lists up to limit certificates of the issuer after seq afterSeq,
// unexpired at notAfterAfter, whose stored response for hash is missing, was
// signed before signedBefore, or states another status than the
// certificate's now; next is the cursor for the following call.
func (s *Store) OCSPStale(ctx context.Context, issuerKeyID, hash string, signedBefore, notAfterAfter time.Time, afterSeq int64, limit int) (recs []pki.CertRecord, next int64, err error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+prefixed("c.", certColumns)+` FROM certificates c
		LEFT JOIN ocsp_responses o ON o.serial = c.serial AND o.hash = $2
		WHERE c.issuer_key_id = $1 AND c.seq > $6 AND c.not_after > $3
			AND (o.serial IS NULL OR o.this_update < $4 OR o.status <> c.status)
		ORDER BY c.seq LIMIT $5`, issuerKeyID, hash, s.t(notAfterAfter), s.t(signedBefore), limit, afterSeq)
	if err != nil {
		return nil, 0, s.wrap(err, "list stale OCSP responses")
	}
	defer rows.Close()
	next = afterSeq
	for rows.Next() {
		seq, c, err := scanCert(rows)
		if err != nil {
			return nil, 0, s.wrap(err, "list stale OCSP responses")
		}
		recs, next = append(recs, c), seq
	}
	if err := rows.Err(); err != nil {
		return nil, 0, s.wrap(err, "list stale OCSP responses")
	}
	return recs, next, nil
}

// prefixed qualifies each of a comma-separated column list with p.
func prefixed(p, columns string) string {
	parts := strings.Split(columns, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// LookupOCSP reads, in one query over the serial index, what OCSP answers
// about serials need: each certificate's status and revocation, and its
// stored response for hash when there is one. Serials never issued are
// absent from the result.
func (s *Store) LookupOCSP(ctx context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error) {
	out := make(map[pki.Serial]pki.OCSPLookup, len(serials))
	if len(serials) == 0 {
		return out, nil
	}
	a := args{hash}
	values := make([]string, len(serials))
	for i, sr := range serials {
		values[i] = string(sr)
	}
	var in string
	if s.d.InList != nil {
		in = s.d.InList(a.add, "c.serial", values)
	} else {
		marks := make([]string, len(values))
		for i, v := range values {
			marks[i] = a.add(v)
		}
		in = "c.serial IN (" + strings.Join(marks, ", ") + ")"
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT c.serial, c.status, c.revoked_at, c.reason, o.status, o.der, o.this_update, o.next_update
		FROM certificates c LEFT JOIN ocsp_responses o ON o.serial = c.serial AND o.hash = $1
		WHERE `+in, a...)
	if err != nil {
		return nil, s.wrap(err, "look up OCSP status")
	}
	defer rows.Close()
	for rows.Next() {
		var serial, status string
		var l pki.OCSPLookup
		var rstatus sql.NullString
		var this, next *time.Time
		if err := rows.Scan(&serial, &status, nullTimeCol{&l.RevokedAt}, &l.Reason, &rstatus, &l.Response.DER,
			nullTimeCol{&this}, nullTimeCol{&next}); err != nil {
			return nil, s.wrap(err, "look up OCSP status")
		}
		l.Status = pki.CertStatus(status)
		if rstatus.Valid && this != nil && next != nil {
			l.Response.Serial, l.Response.Hash, l.Response.Status = pki.Serial(serial), hash, pki.CertStatus(rstatus.String)
			l.Response.ThisUpdate, l.Response.NextUpdate = *this, *next
		} else {
			l.Response.DER = nil
		}
		out[pki.Serial(serial)] = l
	}
	return out, s.wrap(rows.Err(), "look up OCSP status")
}
