package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// maxSample is how many device ids a preview names.
const maxSample = 20

// matchQuery selects the (device id, serial) pairs of a selector's valid,
// unexpired certificates, in (device id, serial) order; createdBefore, when
// not zero, keeps to certificates created at or before it (a job's set).
func (s *Store) matchQuery(a *args, sel pki.Selector, now, createdBefore time.Time) string {
	q := `SELECT c.device_id, c.serial FROM certificates c JOIN devices d ON d.id = c.device_id WHERE ` +
		s.d.MetadataMatch(a.add, sel.MetaKey, sel.MetaValue) +
		` AND c.status = 'valid' AND c.not_after > ` + a.add(s.t(now))
	if !createdBefore.IsZero() {
		q += ` AND c.created_at <= ` + a.add(s.t(createdBefore))
	}
	return q + ` ORDER BY c.device_id, c.serial`
}

// PreviewMatching returns what sel matches at now: counts, the set's hash
// and a sample of device ids, in one query.
func (s *Store) PreviewMatching(ctx context.Context, sel pki.Selector, now time.Time) (pki.MatchSet, error) {
	if err := sel.Validate(); err != nil {
		return pki.MatchSet{}, err
	}
	var a args
	rows, err := s.rdb.QueryContext(ctx, s.matchQuery(&a, sel, now, time.Time{}), a...)
	if err != nil {
		return pki.MatchSet{}, s.wrap(err, "preview matching certificates")
	}
	defer rows.Close()
	var m pki.MatchSet
	h := sha256.New()
	last := ""
	for rows.Next() {
		var device, serial string
		if err := rows.Scan(&device, &serial); err != nil {
			return pki.MatchSet{}, s.wrap(err, "preview matching certificates: scan")
		}
		h.Write([]byte(device + " " + serial + "\n"))
		m.Certificates++
		if device != last {
			m.Devices++
			if len(m.Sample) < maxSample {
				m.Sample = append(m.Sample, device)
			}
			last = device
		}
	}
	if err := rows.Err(); err != nil {
		return pki.MatchSet{}, s.wrap(err, "preview matching certificates")
	}
	m.Hash = hex.EncodeToString(h.Sum(nil))
	return m, nil
}

// CreateRevocationJob records a bulk revocation before its first batch,
// with the audit event of its start.
func (s *Store) CreateRevocationJob(ctx context.Context, job pki.RevocationJob, ev pki.AuditEvent) error {
	actor, err := jsonArg(job.Actor)
	if err != nil {
		return fmt.Errorf("create revocation job: %w", err)
	}
	return s.audited(ctx, "create revocation job", ev, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO revocation_jobs (id, meta_key, meta_value, set_hash, reason, actor, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, job.ID, job.Selector.MetaKey, job.Selector.MetaValue, job.SetHash, int(job.Reason),
			actor, s.t(job.Created))
		return false, s.conflictOr(err, "a revocation job with this id exists")
	})
}

// OpenRevocationJobs lists the bulk revocations not finished, oldest first.
func (s *Store) OpenRevocationJobs(ctx context.Context) ([]pki.RevocationJob, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, meta_key, meta_value, set_hash, reason, actor, created_at, revoked
		FROM revocation_jobs WHERE finished_at IS NULL ORDER BY created_at`)
	if err != nil {
		return nil, s.wrap(err, "open revocation jobs")
	}
	defer rows.Close()
	var out []pki.RevocationJob
	for rows.Next() {
		var j pki.RevocationJob
		var reason int
		if err := rows.Scan(&j.ID, &j.Selector.MetaKey, &j.Selector.MetaValue, &j.SetHash, &reason, jsonCol{&j.Actor},
			timeCol{&j.Created}, &j.Revoked); err != nil {
			return nil, s.wrap(err, "open revocation jobs: scan")
		}
		j.Reason = pki.RevocationReason(reason)
		out = append(out, j)
	}
	return out, s.wrap(rows.Err(), "open revocation jobs")
}

// auditChunk bounds the rows of one multi-row audit insert (11 parameters each).
const auditChunk = 500

// RevokeJobBatch revokes up to limit certificates of the job's set at at,
// in one transaction with one audit event per certificate, the devices'
// status and the other processes' notification; when nothing is left it
// marks the job finished and reports done.
func (s *Store) RevokeJobBatch(ctx context.Context, job pki.RevocationJob, at time.Time, limit int) (revoked []pki.CertRecord, done bool, err error) {
	err = s.inTx(ctx, "revoke job batch", func(tx *sql.Tx) error {
		revoked, done = nil, false
		h, err := s.lockHead(ctx, tx)
		if err != nil {
			return err
		}
		var a args
		q := s.matchQuery(&a, job.Selector, at, job.Created) + " LIMIT " + a.add(limit)
		rows, err := tx.QueryContext(ctx, q, a...)
		if err != nil {
			return fmt.Errorf("select the batch: %w", err)
		}
		var serials []string
		for rows.Next() {
			var device, serial string
			if err := rows.Scan(&device, &serial); err != nil {
				rows.Close()
				return fmt.Errorf("select the batch: %w", err)
			}
			serials = append(serials, serial)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("select the batch: %w", err)
		}
		if len(serials) == 0 {
			done = true
			_, err := tx.ExecContext(ctx, `UPDATE revocation_jobs SET finished_at = $2 WHERE id = $1`, job.ID, s.t(at))
			return err
		}
		var u args
		ts, reason := u.add(s.t(at)), u.add(int(job.Reason))
		in := make([]string, len(serials))
		for i, serial := range serials {
			in[i] = u.add(serial)
		}
		urows, err := tx.QueryContext(ctx, `UPDATE certificates SET status = 'revoked', revoked_at = `+ts+`, reason = `+reason+`
			WHERE status = 'valid' AND serial IN (`+strings.Join(in, ", ")+`) RETURNING `+certColumns, u...)
		if err != nil {
			return fmt.Errorf("revoke the batch: %w", err)
		}
		for urows.Next() {
			_, c, err := scanCert(urows)
			if err != nil {
				urows.Close()
				return fmt.Errorf("revoke the batch: %w", err)
			}
			revoked = append(revoked, c)
		}
		urows.Close()
		if err := urows.Err(); err != nil {
			return fmt.Errorf("revoke the batch: %w", err)
		}
		evs := make([]pki.AuditEvent, len(revoked))
		devices := map[string]bool{}
		notify := make([]pki.Serial, len(revoked))
		for i, c := range revoked {
			evs[i] = pki.AuditEvent{Time: at, Actor: job.Actor, Action: pki.ActionCertificateRevoke, Target: string(c.Serial),
				Details: map[string]string{"reason": job.Reason.String(), "device_id": c.DeviceID, "job": job.ID}}
			devices[c.DeviceID] = true
			notify[i] = c.Serial
		}
		if err := s.appendEvents(ctx, tx, h, evs); err != nil {
			return err
		}
		if err := s.markDevicesIfAllRevoked(ctx, tx, devices, at); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE revocation_jobs SET revoked = revoked + $2 WHERE id = $1`, job.ID, len(revoked)); err != nil {
			return fmt.Errorf("job progress: %w", err)
		}
		if err := s.notifyRevoked(ctx, tx, notify); err != nil {
			return err
		}
		return s.saveHead(ctx, tx, h)
	})
	return revoked, done, err
}

// appendEvents links evs to the chain and inserts them, auditChunk rows per
// statement; saveHead must follow before commit.
func (s *Store) appendEvents(ctx context.Context, tx *sql.Tx, h *chainHead, evs []pki.AuditEvent) error {
	for len(evs) > 0 {
		n := min(len(evs), auditChunk)
		var a args
		vals := make([]string, n)
		for i, ev := range evs[:n] {
			ev.Seq = h.seq + 1
			ev.Time = norm(ev.Time)
			ev.PrevHash = h.hash
			ev.Hash = ev.ChainHash(h.hash)
			details, err := jsonArg(nonNil(ev.Details))
			if err != nil {
				return fmt.Errorf("encode audit details: %w", err)
			}
			vals[i] = "(" + strings.Join([]string{a.add(ev.Seq), a.add(s.t(ev.Time)), a.add(ev.Actor.Name), a.add(ev.Actor.CredentialID),
				a.add(ev.Actor.RemoteAddr), a.add(ev.Actor.RequestID), a.add(ev.Action), a.add(ev.Target), a.add(details),
				a.add(ev.PrevHash), a.add(ev.Hash)}, ", ") + ")"
			h.seq, h.hash = ev.Seq, ev.Hash
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events
			(seq, time, actor_name, credential_id, remote_addr, request_id, action, target, details, prev_hash, hash)
			VALUES `+strings.Join(vals, ", "), a...); err != nil {
			return fmt.Errorf("insert audit events: %w", err)
		}
		evs = evs[n:]
	}
	return nil
}

// markDevicesIfAllRevoked marks revoked those of the devices that hold no
// valid, unexpired certificate any more, in one statement.
func (s *Store) markDevicesIfAllRevoked(ctx context.Context, tx *sql.Tx, devices map[string]bool, at time.Time) error {
	var a args
	ts := a.add(s.t(at))
	ids := make([]string, 0, len(devices))
	for id := range devices {
		ids = append(ids, a.add(id))
	}
	_, err := tx.ExecContext(ctx, `UPDATE devices SET status = 'revoked', updated_at = `+ts+`
		WHERE id IN (`+strings.Join(ids, ", ")+`) AND status <> 'revoked' AND NOT EXISTS
		(SELECT 1 FROM certificates c WHERE c.device_id = devices.id AND c.status = 'valid' AND c.not_after > `+ts+`)`, a...)
	if err != nil {
		return fmt.Errorf("update devices: %w", err)
	}
	return nil
}

// GetRevocationJob returns one job, or pki.NotFound.
func (s *Store) GetRevocationJob(ctx context.Context, id string) (pki.RevocationJob, error) {
	var j pki.RevocationJob
	var reason int
	err := s.rdb.QueryRowContext(ctx, `SELECT id, meta_key, meta_value, set_hash, reason, actor, created_at, revoked, finished_at
		FROM revocation_jobs WHERE id = $1`, id).Scan(&j.ID, &j.Selector.MetaKey, &j.Selector.MetaValue, &j.SetHash, &reason,
		jsonCol{&j.Actor}, timeCol{&j.Created}, &j.Revoked, nullTimeCol{&j.Finished})
	if errors.Is(err, sql.ErrNoRows) {
		return pki.RevocationJob{}, pki.Errorf(pki.NotFound, "no revocation job %s", strconv.Quote(id))
	}
	if err != nil {
		return pki.RevocationJob{}, s.wrap(err, "get revocation job")
	}
	j.Reason, j.Done = pki.RevocationReason(reason), j.Finished != nil
	return j, nil
}
