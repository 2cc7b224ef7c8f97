package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetpki/fleetpki/pki"
)

// chainHead is the audit chain's last link, read under lock inside a
// write transaction.
type chainHead struct {
	seq  int64
	hash []byte
}

// lockHead reads and locks the chain head. Every transaction that appends
// audit events takes this lock first, so appends from any number of
// processes form one chain; holding it to commit is the price of the chain.
func (s *Store) lockHead(ctx context.Context, tx *sql.Tx) (*chainHead, error) {
	h := &chainHead{}
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1 `+s.d.ForUpdate).Scan(&h.seq, &h.hash)
	if err != nil {
		return nil, fmt.Errorf("lock audit head: %w", err)
	}
	return h, nil
}

// appendEvent links ev to the chain and inserts it; saveHead must follow
// before commit.
func (s *Store) appendEvent(ctx context.Context, tx *sql.Tx, h *chainHead, ev pki.AuditEvent) error {
	ev.Seq = h.seq + 1
	ev.Time = norm(ev.Time)
	ev.PrevHash = h.hash
	ev.Hash = ev.ChainHash(h.hash)
	details, err := jsonArg(nonNil(ev.Details))
	if err != nil {
		return fmt.Errorf("encode audit details: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_events
		(seq, time, actor_name, credential_id, remote_addr, request_id, action, target, details, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		ev.Seq, s.t(ev.Time), ev.Actor.Name, ev.Actor.CredentialID, ev.Actor.RemoteAddr, ev.Actor.RequestID,
		ev.Action, ev.Target, details, ev.PrevHash, ev.Hash)
	if err != nil {
		return fmt.Errorf("insert audit event: %w", err)
	}
	h.seq, h.hash = ev.Seq, ev.Hash
	return nil
}

func (s *Store) saveHead(ctx context.Context, tx *sql.Tx, h *chainHead) error {
	if _, err := tx.ExecContext(ctx, `UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, h.seq, h.hash); err != nil {
		return fmt.Errorf("update audit head: %w", err)
	}
	return nil
}

// audited runs fn and then appends ev, all in one transaction. When fn
// returns skip=true the event is not written (nothing changed).
func (s *Store) audited(ctx context.Context, op string, ev pki.AuditEvent, fn func(tx *sql.Tx) (skip bool, err error)) error {
	return s.inTx(ctx, op, func(tx *sql.Tx) error {
		h, err := s.lockHead(ctx, tx)
		if err != nil {
			return err
		}
		skip, err := fn(tx)
		if err != nil || skip {
			return err
		}
		if err := s.appendEvent(ctx, tx, h, ev); err != nil {
			return err
		}
		return s.saveHead(ctx, tx, h)
	})
}

// AppendAudit appends an event that records no other change.
func (s *Store) AppendAudit(ctx context.Context, ev pki.AuditEvent) error {
	return s.audited(ctx, "append audit", ev, func(*sql.Tx) (bool, error) { return false, nil })
}

// ListAudit lists events in ascending Seq order after afterSeq.
func (s *Store) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]pki.AuditEvent, error) {
	if limit <= 0 || limit > 10000 {
		return nil, pki.Errorf(pki.Invalid, "limit must be between 1 and 10000")
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, s.wrap(err, "list audit")
	}
	return s.scanAudit(rows)
}

const auditColumns = `seq, time, actor_name, credential_id, remote_addr, request_id, action, target, details, prev_hash, hash`

func (s *Store) scanAudit(rows *sql.Rows) ([]pki.AuditEvent, error) {
	defer rows.Close()
	var out []pki.AuditEvent
	for rows.Next() {
		var e pki.AuditEvent
		if err := rows.Scan(&e.Seq, timeCol{&e.Time}, &e.Actor.Name, &e.Actor.CredentialID, &e.Actor.RemoteAddr,
			&e.Actor.RequestID, &e.Action, &e.Target, jsonCol{&e.Details}, &e.PrevHash, &e.Hash); err != nil {
			return nil, s.wrap(err, "list audit: scan")
		}
		if len(e.Details) == 0 {
			e.Details = nil
		}
		out = append(out, e)
	}
	return out, s.wrap(rows.Err(), "list audit")
}

// maxAuditTargets bounds one ListAuditRecent's target list.
const maxAuditTargets = 1000

// ListAuditRecent lists the newest events, newest first, at most limit of
// them; with targets, only events about those targets (the index on
// target serves it).
func (s *Store) ListAuditRecent(ctx context.Context, targets []string, limit int) ([]pki.AuditEvent, error) {
	if limit <= 0 || limit > 10000 {
		return nil, pki.Errorf(pki.Invalid, "limit must be between 1 and 10000")
	}
	if len(targets) > maxAuditTargets {
		return nil, pki.Errorf(pki.Invalid, "at most %d targets", maxAuditTargets)
	}
	q := `SELECT ` + auditColumns + ` FROM audit_events`
	args := []any{limit}
	if len(targets) > 0 {
		ph := make([]string, len(targets))
		for i, t := range targets {
			ph[i] = "$" + strconv.Itoa(i+2)
			args = append(args, t)
		}
		q += ` WHERE target IN (` + strings.Join(ph, ", ") + `)`
	}
	rows, err := s.rdb.QueryContext(ctx, q+` ORDER BY seq DESC LIMIT $1`, args...)
	if err != nil {
		return nil, s.wrap(err, "list recent audit")
	}
	return s.scanAudit(rows)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
