package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// revocationChannel is the NOTIFY channel on which every fleetpki process
// sharing the database learns of revocations made by the others.
const revocationChannel = "fleetpki_revocations"

// maxPayload keeps a NOTIFY under Postgres's 8000-byte payload limit.
const maxPayload = 7000

// notifyRevoked sends the serials, comma-separated, in as few NOTIFYs as
// fit; Postgres delivers them only if the transaction commits.
func notifyRevoked(ctx context.Context, tx *sql.Tx, serials []pki.Serial) error {
	var b strings.Builder
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", revocationChannel, b.String())
		b.Reset()
		return err
	}
	for _, s := range serials {
		if b.Len()+len(s)+1 > maxPayload {
			if err := flush(); err != nil {
				return err
			}
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(s))
	}
	return flush()
}

// ListenRevocations calls fn for every serial that any process sharing the
// database revokes (this one included), until ctx ends. It holds one
// connection of its own and reconnects with backoff when it is lost; what
// was revoked while it was disconnected is not replayed, so callers re-read
// state (OCSP answers expire, CRLs regenerate hourly).
func (s *Store) ListenRevocations(ctx context.Context, log *slog.Logger, fn func(pki.Serial)) error {
	backoff := time.Second
	for ctx.Err() == nil {
		err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		log.WarnContext(ctx, "revocation listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return nil
}

func (s *Store) listen(ctx context.Context, fn func(pki.Serial)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The connection carries LISTEN state: take it out of the pool for good.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+revocationChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		for _, p := range strings.Split(n.Payload, ",") {
			if serial, err := pki.ParseSerial(p); err == nil {
				fn(serial)
			}
		}
	}
}
