package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

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
	dup  bool // refused before reaching the database
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
		r.err, r.dup = nil, false
		live = append(live, r)
	}
	// The group's transaction must not die with one caller's context.
	ctx := context.Background()
	live = s.dropDuplicates(live)
	for _, r := range dups(batch) {
		r.done <- r.err
	}
	if len(live) == 0 {
		return
	}
	err := s.insertFast(ctx, live)
	if err != nil {
		if s.head != nil {
			s.log.Debug("group insert fast path failed; retrying under the lock", "err", err)
		}
		err = s.inTx(ctx, "insert certificates", func(tx *sql.Tx) error {
			return s.insertLocked(ctx, tx, live)
		})
	}
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

// dropDuplicates fails the requests whose serial or fingerprint an earlier
// request of the group has (the first wins, as in sequence) and returns the rest.
func (s *Store) dropDuplicates(batch []*insertReq) []*insertReq {
	seen := make(map[string]bool, 2*len(batch))
	out := batch[:0:0]
	for _, r := range batch {
		c := r.cert
		if seen["s"+string(c.Serial)] || seen["f"+c.FingerprintSHA256] {
			r.err, r.dup = conflict(c.Serial), true
			continue
		}
		seen["s"+string(c.Serial)], seen["f"+c.FingerprintSHA256] = true, true
		out = append(out, r)
	}
	return out
}

func dups(batch []*insertReq) []*insertReq {
	var out []*insertReq
	for _, r := range batch {
		if r.dup {
			out = append(out, r)
		}
	}
	return out
}

// insertFast writes the whole group in ONE autocommitted statement, where
// the dialect allows data-modifying WITH clauses (Postgres): a loopback
// round trip costs about as much as the work, so one instead of seven
// matters. It is optimistic: it links the events to the chain head this
// process wrote last, and swaps the head only if it is still that one; the
// statement fails as a whole (fleetpki_assert raises) when another writer
// moved the head or a certificate conflicts, and the caller then takes the
// locked path, which sorts both out.
func (s *Store) insertFast(ctx context.Context, batch []*insertReq) error {
	if !s.d.WritableCTE || s.head == nil {
		return errors.New("no fast path")
	}
	var a args
	h := *s.head
	parts := []string{"c AS (" + s.certInsert(&a, batch) + " RETURNING 1)"}
	for i, q := range s.deviceUpserts(&a, batch) {
		parts = append(parts, fmt.Sprintf("d%d AS (%s)", i, q))
	}
	if q := s.credentialUses(&a, batch); q != "" {
		parts = append(parts, "u AS ("+q+")")
	}
	parts = append(parts, "e AS ("+s.eventInsert(&a, &h, batch)+")",
		"h AS (UPDATE audit_head SET seq = "+a.add(h.seq)+", hash = "+a.add(h.hash)+
			" WHERE id = 1 AND seq = "+a.add(s.head.seq)+" RETURNING 1)")
	q := "WITH " + strings.Join(parts, ",\n") + "\nSELECT fleetpki_assert((SELECT count(*) FROM c) = " + a.add(len(batch)) +
		" AND (SELECT count(*) FROM h) = 1, 'group insert: conflict or concurrent audit writer')"
	if _, err := s.db.ExecContext(ctx, q, a...); err != nil {
		return err
	}
	s.head = &h
	return nil
}

// insertLocked writes a group inside a transaction holding the audit head's
// lock: the certificates first (a duplicate serial or fingerprint is
// skipped by ON CONFLICT DO NOTHING and fails only its own request; the
// device foreign key is checked at commit), then the devices of the
// certificates that went in, then their audit events.
func (s *Store) insertLocked(ctx context.Context, tx *sql.Tx, batch []*insertReq) error {
	h, err := s.lockHead(ctx, tx)
	if err != nil {
		return err
	}
	var a args
	rows, err := tx.QueryContext(ctx, s.certInsert(&a, batch)+" RETURNING serial", a...)
	if err != nil {
		return fmt.Errorf("insert certificates: %w", err)
	}
	inserted := make(map[string]bool, len(batch))
	for rows.Next() {
		var serial string
		if err := rows.Scan(&serial); err != nil {
			rows.Close()
			return fmt.Errorf("insert certificates: %w", err)
		}
		inserted[serial] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("insert certificates: %w", err)
	}
	var ok []*insertReq
	for _, r := range batch {
		r.err = nil
		if !inserted[string(r.cert.Serial)] {
			r.err = conflict(r.cert.Serial)
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return nil
	}
	a = nil
	for _, q := range s.deviceUpserts(&a, ok) {
		if _, err := tx.ExecContext(ctx, q, a...); err != nil {
			return fmt.Errorf("upsert devices: %w", err)
		}
		a = nil
	}
	a = nil
	if q := s.credentialUses(&a, ok); q != "" {
		if _, err := tx.ExecContext(ctx, q, a...); err != nil {
			return fmt.Errorf("count credential uses: %w", err)
		}
	}
	a = nil
	if _, err := tx.ExecContext(ctx, s.eventInsert(&a, h, ok), a...); err != nil {
		return fmt.Errorf("insert audit events: %w", err)
	}
	if err := s.saveHead(ctx, tx, h); err != nil {
		return err
	}
	s.head = h // becomes true at commit; if the commit fails the fast path just fails once
	return nil
}

func conflict(serial pki.Serial) error {
	return pki.Errorf(pki.Conflict, "a certificate with serial %s or the same fingerprint exists", serial)
}

// certInsert returns the INSERT of the group's certificates (binding into a).
func (s *Store) certInsert(a *args, batch []*insertReq) string {
	rows := make([]string, 0, len(batch))
	for _, r := range batch {
		c := r.cert
		rows = append(rows, "("+strings.Join([]string{a.add(string(c.Serial)), a.add(c.DeviceID), a.add(c.Profile),
			a.add(string(c.Status)), a.add(s.t(c.NotBefore)), a.add(s.t(c.NotAfter)), a.add(c.DER), a.add(c.IssuerKeyID),
			a.add(c.FingerprintSHA256), a.add(s.tp(c.RevokedAt)), a.add(int(c.Reason)), a.add(s.t(c.CreatedAt))}, ", ")+")")
	}
	return `INSERT INTO certificates
		(serial, device_id, profile, status, not_before, not_after, der, issuer_key_id, fingerprint_sha256, revoked_at, reason, created_at)
		VALUES ` + strings.Join(rows, ", ") + ` ON CONFLICT DO NOTHING`
}

// deviceUpserts returns up to two statements (binding into a; run them with
// one args each in order, or together) that create the group's devices or
// mark them active again; a request that carries metadata replaces the
// stored metadata. One statement may not touch a row twice, so requests are
// merged per device first: the last metadata given wins.
func (s *Store) deviceUpserts(a *args, batch []*insertReq) []string {
	type merged struct {
		dev  pki.Device
		meta map[string]string
	}
	byID := map[string]*merged{}
	var order []string
	for _, r := range batch {
		m, ok := byID[r.dev.ID]
		if !ok {
			m = &merged{dev: r.dev}
			byID[r.dev.ID] = m
			order = append(order, r.dev.ID)
		}
		m.dev.UpdatedAt, m.dev.Kind = r.dev.UpdatedAt, r.dev.Kind
		if r.dev.Metadata != nil {
			m.meta = r.dev.Metadata
		}
	}
	var out []string
	for _, replace := range []bool{true, false} {
		var rows []string
		for _, id := range order {
			m := byID[id]
			if (m.meta != nil) != replace {
				continue
			}
			meta, _ := jsonArg(nonNil(m.meta)) // a map of strings always encodes
			kind := m.dev.Kind
			if kind == "" {
				kind = pki.KindDevice
			}
			rows = append(rows, "("+a.add(id)+", 'active', "+a.add(meta)+", "+a.add(s.t(m.dev.CreatedAt))+", "+a.add(s.t(m.dev.UpdatedAt))+
				", "+a.add(string(kind))+")")
		}
		if len(rows) == 0 {
			continue
		}
		// kind is not updated: an id keeps the kind it was first issued as
		// (the CA refuses a service certificate for a device's id).
		set := "status = 'active', updated_at = excluded.updated_at"
		if replace {
			set += ", metadata = excluded.metadata"
		}
		out = append(out, `INSERT INTO devices (id, status, metadata, created_at, updated_at, kind) VALUES `+
			strings.Join(rows, ", ")+` ON CONFLICT (id) DO UPDATE SET `+set)
	}
	return out
}

// credentialUses returns the UPDATE counting one use per certificate of the
// group's unlimited enrollment credentials ("" when there are none).
func (s *Store) credentialUses(a *args, batch []*insertReq) string {
	uses := map[string]int{}
	var order []string
	for _, r := range batch {
		if id := r.ev.Actor.CredentialID; id != "" && r.ev.Action == pki.ActionCertificateIssue {
			if uses[id] == 0 {
				order = append(order, id)
			}
			uses[id]++
		}
	}
	if len(order) == 0 {
		return ""
	}
	var cases, ids []string
	for _, id := range order {
		p := a.add(id)
		cases = append(cases, "WHEN "+p+" THEN "+a.add(uses[id]))
		ids = append(ids, p)
	}
	return "UPDATE credentials SET uses = uses + CASE id " + strings.Join(cases, " ") + " ELSE 0 END WHERE max_uses = 0 AND id IN (" +
		strings.Join(ids, ", ") + ")"
}

// eventInsert links the requests' events to the chain after h (advancing
// h) and returns their INSERT (binding into a).
func (s *Store) eventInsert(a *args, h *chainHead, batch []*insertReq) string {
	rows := make([]string, 0, len(batch))
	for _, r := range batch {
		ev := r.ev
		ev.Seq, ev.Time, ev.PrevHash = h.seq+1, norm(ev.Time), h.hash
		ev.Hash = ev.ChainHash(h.hash)
		details, _ := jsonArg(nonNil(ev.Details)) // a map of strings always encodes
		rows = append(rows, "("+strings.Join([]string{a.add(ev.Seq), a.add(s.t(ev.Time)), a.add(ev.Actor.Name),
			a.add(ev.Actor.CredentialID), a.add(ev.Actor.RemoteAddr), a.add(ev.Actor.RequestID), a.add(ev.Action),
			a.add(ev.Target), a.add(details), a.add(ev.PrevHash), a.add(ev.Hash)}, ", ")+")")
		h.seq, h.hash = ev.Seq, ev.Hash
	}
	return `INSERT INTO audit_events
		(seq, time, actor_name, credential_id, remote_addr, request_id, action, target, details, prev_hash, hash)
		VALUES ` + strings.Join(rows, ", ")
}
