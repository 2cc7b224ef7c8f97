package sqlite

import (
	"context"
	"log/slog"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// Revocation polling: SQLite has no notifications, so other processes on
// the same file (`fleetpki revoke`, `fleetpki ocsp`) are heard by reading
// the revocations of the last moments every pollInterval. Each query
// overlaps the last by pollOverlap, so that a row committed with a slightly
// older timestamp is not missed; serials already told are not told again.
const (
	pollInterval = time.Second
	pollOverlap  = 5 * time.Second
)

// ListenRevocations calls fn for each serial revoked by any process using
// the file, polling every second, until ctx ends.
func (s *Store) ListenRevocations(ctx context.Context, log *slog.Logger, fn func(pki.Serial)) error {
	seen := map[pki.Serial]bool{}
	since := time.Now().Add(-pollOverlap)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		serials, err := s.RevokedSince(ctx, since)
		if err != nil {
			if ctx.Err() == nil {
				log.WarnContext(ctx, "polling revocations failed", "err", err)
			}
			continue
		}
		next := make(map[pki.Serial]bool, len(serials))
		for _, serial := range serials {
			next[serial] = true
			if !seen[serial] {
				fn(serial)
			}
		}
		seen, since = next, now.Add(-pollOverlap)
	}
}

// Elector returns an elector that always leads: one process owns an SQLite
// file (replicas share Postgres).
func (s *Store) Elector(string) store.Elector { return soleLeader{} }

type soleLeader struct{}

func (soleLeader) IsLeader(context.Context) (bool, error) { return true, nil }
func (soleLeader) Close() error                           { return nil }
