package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fleetpki/fleetpki/pki"
)

// Certificate insertions are committed in groups: every insertion must take
// the audit chain's lock and wait for its own commit (a disk flush), so one
// transaction per certificate would cap issuance at one flush per
// certificate. Instead one goroutine takes whatever insertions are waiting
// (up to maxBatch) and commits them together; each caller still returns only
// after its certificate is durable. A serial collision fails only its own
// insertion (ON CONFLICT DO NOTHING), not the group.
const maxBatch = 64

type insertReq struct {
	ctx  context.Context
	cert pki.CertRecord
	dev  pki.Device
	ev   pki.AuditEvent
	err  error
	done chan error
}

// errClosed is returned to insertions that arrive after Close.
var errClosed = errors.New("store is closed")

// InsertCertificate stores a certificate, its device and its audit event in
// one transaction, shared with concurrent insertions.
func (s *Store) InsertCertificate(ctx context.Context, cert pki.CertRecord, dev pki.Device, ev pki.AuditEvent) error {
	r := &insertReq{ctx: ctx, cert: cert, dev: dev, ev: ev, done: make(chan error, 1)}
	select {
	case s.inserts <- r:
	case <-ctx.Done():
		return fmt.Errorf("insert certificate %s: %w", cert.Serial, ctx.Err())
	case <-s.stop:
		return fmt.Errorf("insert certificate %s: %w", cert.Serial, errClosed)
	}
	// Wait for the outcome even if ctx ends meanwhile: once queued, the
	// insertion may commit, and the caller must not believe it did not.
	return <-r.done
}

func (s *Store) insertLoop() {
	defer close(s.done)
	batch := make([]*insertReq, 0, maxBatch)
	for {
		select {
		case r := <-s.inserts:
			batch = append(batch[:0], r)
		case <-s.stop:
			s.drainClosed()
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.inserts:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

// drainClosed fails insertions queued when Close was called.
func (s *Store) drainClosed() {
	for {
		select {
		case r := <-s.inserts:
			r.done <- fmt.Errorf("insert certificate %s: %w", r.cert.Serial, errClosed)
		default:
			return
		}
	}
}

func (s *Store) commitBatch(batch []*insertReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- fmt.Errorf("insert certificate %s: %w", r.cert.Serial, err)
			continue
		}
		r.err = nil
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// The group's transaction must not die with one caller's context.
	ctx := context.Background()
	err := s.inTx(ctx, "insert certificates", func(tx *sql.Tx) error {
		h, err := s.lockHead(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range live {
			if r.err = s.insertOne(ctx, tx, h, r); r.err != nil && !errors.Is(r.err, pki.Conflict) {
				return r.err
			}
		}
		return s.saveHead(ctx, tx, h)
	})
	for _, r := range live {
		switch {
		case err != nil:
			r.done <- fmt.Errorf("insert certificate %s: %w", r.cert.Serial, err)
		case r.err != nil:
			r.done <- r.err
		default:
			r.done <- nil
		}
	}
}

// insertOne inserts the certificate first, so that a duplicate serial or
// fingerprint is found before the device or the audit log are touched (the
// device foreign key is checked at commit).
func (s *Store) insertOne(ctx context.Context, tx *sql.Tx, h *chainHead, r *insertReq) error {
	c := r.cert
	res, err := tx.ExecContext(ctx, `INSERT INTO certificates
		(serial, device_id, profile, status, not_before, not_after, der, issuer_key_id, fingerprint_sha256, revoked_at, reason, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT DO NOTHING`,
		string(c.Serial), c.DeviceID, c.Profile, string(c.Status), s.t(c.NotBefore), s.t(c.NotAfter), c.DER,
		c.IssuerKeyID, c.FingerprintSHA256, s.tp(c.RevokedAt), int(c.Reason), s.t(c.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert certificate %s: %w", c.Serial, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("insert certificate %s: %w", c.Serial, err)
	} else if n == 0 {
		return pki.Errorf(pki.Conflict, "a certificate with serial %s or the same fingerprint exists", c.Serial)
	}
	if err := s.upsertDevice(ctx, tx, r.dev); err != nil {
		return err
	}
	return s.appendEvent(ctx, tx, h, r.ev)
}

// upsertDevice creates the device, or marks it active again and, when
// metadata is given, replaces its metadata.
func (s *Store) upsertDevice(ctx context.Context, tx *sql.Tx, d pki.Device) error {
	meta, err := jsonArg(nonNil(d.Metadata))
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO devices (id, status, metadata, created_at, updated_at)
		VALUES ($1, 'active', $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET status = 'active', updated_at = excluded.updated_at,
			metadata = CASE WHEN $5 THEN excluded.metadata ELSE devices.metadata END`,
		d.ID, meta, s.t(d.CreatedAt), s.t(d.UpdatedAt), d.Metadata != nil)
	if err != nil {
		return fmt.Errorf("upsert device %q: %w", d.ID, err)
	}
	return nil
}
