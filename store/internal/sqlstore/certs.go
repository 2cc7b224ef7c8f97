package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

const certColumns = `seq, serial, device_id, profile, status, not_before, not_after, der, issuer_key_id,
	fingerprint_sha256, revoked_at, reason, created_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanCert(r rowScanner) (seq int64, c pki.CertRecord, err error) {
	var serial, status string
	var reason int
	err = r.Scan(&seq, &serial, &c.DeviceID, &c.Profile, &status, timeCol{&c.NotBefore}, timeCol{&c.NotAfter}, &c.DER,
		&c.IssuerKeyID, &c.FingerprintSHA256, nullTimeCol{&c.RevokedAt}, &reason, timeCol{&c.CreatedAt})
	c.Serial, c.Status, c.Reason = pki.Serial(serial), pki.CertStatus(status), pki.RevocationReason(reason)
	return seq, c, err
}

// GetCertificate returns the certificate with this serial.
func (s *Store) GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error) {
	return s.getCertificate(ctx, s.rdb, serial)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) getCertificate(ctx context.Context, q querier, serial pki.Serial) (pki.CertRecord, error) {
	_, c, err := scanCert(q.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = $1`, string(serial)))
	if errors.Is(err, sql.ErrNoRows) {
		return pki.CertRecord{}, pki.Errorf(pki.NotFound, "no certificate with serial %s", serial)
	}
	if err != nil {
		return pki.CertRecord{}, s.wrap(err, "get certificate")
	}
	return c, nil
}

// ListCertificates lists certificates, newest first.
func (s *Store) ListCertificates(ctx context.Context, f store.CertFilter) (store.Page[pki.CertRecord], error) {
	var page store.Page[pki.CertRecord]
	n, err := limit(f.Limit)
	if err != nil {
		return page, err
	}
	after, err := decodeSeqCursor("c", f.Cursor)
	if err != nil {
		return page, err
	}
	var a args
	var where []string
	if after > 0 {
		where = append(where, "seq < "+a.add(after))
	}
	if f.DeviceID != "" {
		where = append(where, "device_id = "+a.add(f.DeviceID))
	}
	switch f.Status {
	case "":
	case pki.CertValid:
		where = append(where, "status = 'valid'")
		if !f.Now.IsZero() {
			where = append(where, "not_after > "+a.add(s.t(f.Now)))
		}
	case pki.CertRevoked:
		where = append(where, "status = 'revoked'")
	case pki.CertExpired:
		if f.Now.IsZero() {
			return page, pki.Errorf(pki.Invalid, "the expired filter needs the current time")
		}
		where = append(where, "status = 'valid'", "not_after <= "+a.add(s.t(f.Now)))
	default:
		return page, pki.Errorf(pki.Invalid, "unknown certificate status %q", f.Status)
	}
	if !f.ExpiringBefore.IsZero() {
		if f.Now.IsZero() {
			return page, pki.Errorf(pki.Invalid, "the expiring filter needs the current time")
		}
		before := a.add(s.t(f.ExpiringBefore))
		where = append(where, "status = 'valid'", "not_after > "+a.add(s.t(f.Now)), "not_after <= "+before,
			"NOT EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = certificates.device_id AND n.status = 'valid' AND n.not_after > "+before+")")
	}
	q := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC LIMIT " + a.add(n+1)
	rows, err := s.rdb.QueryContext(ctx, q, a...)
	if err != nil {
		return page, s.wrap(err, "list certificates")
	}
	defer rows.Close()
	var lastSeq int64
	for rows.Next() {
		seq, c, err := scanCert(rows)
		if err != nil {
			return page, s.wrap(err, "list certificates: scan")
		}
		if len(page.Items) == n {
			page.Next = encodeCursor("c", strconv.FormatInt(lastSeq, 10))
			break
		}
		page.Items = append(page.Items, c)
		lastSeq = seq
	}
	return page, s.wrap(rows.Err(), "list certificates")
}

// RevokeCertificate revokes the certificate unless it is revoked already.
func (s *Store) RevokeCertificate(ctx context.Context, serial pki.Serial, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) (pki.CertRecord, bool, error) {
	var rec pki.CertRecord
	var changed bool
	err := s.audited(ctx, "revoke certificate", ev, func(tx *sql.Tx) (bool, error) {
		// The conditional update is the whole concurrency story: of many
		// concurrent revocations exactly one matches the row.
		_, c, err := scanCert(tx.QueryRowContext(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = $2, reason = $3
			WHERE serial = $1 AND status <> 'revoked' RETURNING `+certColumns, string(serial), s.t(at), int(reason)))
		if errors.Is(err, sql.ErrNoRows) {
			rec, err = s.getCertificate(ctx, tx, serial)
			return true, err // NotFound, or revoked already: no event
		}
		if err != nil {
			return false, fmt.Errorf("update certificate: %w", err)
		}
		rec, changed = c, true
		if err := s.notifyRevoked(ctx, tx, []pki.Serial{c.Serial}); err != nil {
			return false, err
		}
		return false, s.markDeviceIfAllRevoked(ctx, tx, c.DeviceID, at)
	})
	if err != nil {
		return pki.CertRecord{}, false, err
	}
	return rec, changed, nil
}

func (s *Store) notifyRevoked(ctx context.Context, tx *sql.Tx, serials []pki.Serial) error {
	if s.d.NotifyRevoked == nil || len(serials) == 0 {
		return nil
	}
	if err := s.d.NotifyRevoked(ctx, tx, serials); err != nil {
		return fmt.Errorf("notify revocation: %w", err)
	}
	return nil
}

// markDeviceIfAllRevoked sets the device revoked when none of its
// certificates remains valid and unexpired.
func (s *Store) markDeviceIfAllRevoked(ctx context.Context, tx *sql.Tx, id string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE devices SET status = 'revoked', updated_at = $2
		WHERE id = $1 AND status <> 'revoked' AND NOT EXISTS
		(SELECT 1 FROM certificates WHERE device_id = $1 AND status = 'valid' AND not_after > $2)`, id, s.t(at))
	if err != nil {
		return fmt.Errorf("update device %q: %w", id, err)
	}
	return nil
}

// RevokeDevice revokes every unexpired, unrevoked certificate of the device.
func (s *Store) RevokeDevice(ctx context.Context, deviceID string, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) ([]pki.CertRecord, error) {
	var revoked []pki.CertRecord
	err := s.audited(ctx, "revoke device", ev, func(tx *sql.Tx) (bool, error) {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE id = $1 `+s.d.ForUpdate, deviceID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, pki.Errorf(pki.NotFound, "no device %q", deviceID)
		}
		if err != nil {
			return false, fmt.Errorf("lock device: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = $2, reason = $3
			WHERE device_id = $1 AND status <> 'revoked' AND not_after > $2 RETURNING `+certColumns,
			deviceID, s.t(at), int(reason))
		if err != nil {
			return false, fmt.Errorf("update certificates: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			_, c, err := scanCert(rows)
			if err != nil {
				return false, fmt.Errorf("scan certificate: %w", err)
			}
			revoked = append(revoked, c)
		}
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("update certificates: %w", err)
		}
		if err := s.markDeviceIfAllRevoked(ctx, tx, deviceID, at); err != nil {
			return false, err
		}
		serials := make([]pki.Serial, len(revoked))
		for i, c := range revoked {
			serials[i] = c.Serial
		}
		if err := s.notifyRevoked(ctx, tx, serials); err != nil {
			return false, err
		}
		return len(revoked) == 0, nil
	})
	if err != nil {
		return nil, err
	}
	return revoked, nil
}

// RevokedCerts streams an issuer's revoked, unexpired certificates in serial order.
func (s *Store) RevokedCerts(ctx context.Context, issuerKeyID string, notAfterAfter, revokedSince time.Time) iter.Seq2[pki.RevokedCert, error] {
	return func(yield func(pki.RevokedCert, error) bool) {
		rows, err := s.rdb.QueryContext(ctx, `SELECT serial, revoked_at, reason FROM certificates
			WHERE issuer_key_id = $1 AND status = 'revoked' AND not_after > $2 AND revoked_at >= $3 ORDER BY serial`,
			issuerKeyID, s.t(notAfterAfter), s.t(revokedSince))
		if err != nil {
			yield(pki.RevokedCert{}, s.wrap(err, "revoked certificates"))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var c pki.RevokedCert
			var serial string
			var reason int
			if err := rows.Scan(&serial, timeCol{&c.RevokedAt}, &reason); err != nil {
				yield(pki.RevokedCert{}, s.wrap(err, "revoked certificates: scan"))
				return
			}
			c.Serial, c.Reason = pki.Serial(serial), pki.RevocationReason(reason)
			if !yield(c, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(pki.RevokedCert{}, s.wrap(err, "revoked certificates"))
		}
	}
}

// RevokedSince lists the serials revoked at or after since, of any issuer
// (SQLite's revocation polling).
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]pki.Serial, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT serial FROM certificates WHERE status = 'revoked' AND revoked_at >= $1`, s.t(since))
	if err != nil {
		return nil, s.wrap(err, "recent revocations")
	}
	defer rows.Close()
	var out []pki.Serial
	for rows.Next() {
		var serial string
		if err := rows.Scan(&serial); err != nil {
			return nil, s.wrap(err, "recent revocations: scan")
		}
		out = append(out, pki.Serial(serial))
	}
	return out, s.wrap(rows.Err(), "recent revocations")
}
