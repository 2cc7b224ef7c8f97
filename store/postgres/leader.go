package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetpki/fleetpki/store"
)

// Leader elects one holder of a named role (such as generating an issuer's
// CRLs) among the processes sharing the database: a session advisory lock,
// held on a connection taken out of the pool for as long as the role is
// held. If the process or its connection dies, Postgres releases the lock and
// another process takes over at its next IsLeader.
type Leader struct {
	store *Store
	key   int64

	mu   sync.Mutex
	conn *pgx.Conn
}

// Elector returns the elector of name (a *Leader).
func (s *Store) Elector(name string) store.Elector { return s.Leader(name) }

// Leader returns an elector for name; it holds nothing until IsLeader.
func (s *Store) Leader(name string) *Leader {
	h := fnv.New64a()
	_, _ = h.Write([]byte("fleetpki:" + name))
	return &Leader{store: s, key: int64(h.Sum64())}
}

// IsLeader reports whether this process holds the role, trying to take it
// when nobody does. A lost connection loses the role.
func (l *Leader) IsLeader(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		if err := l.conn.Ping(ctx); err == nil {
			return true, nil
		}
		_ = l.conn.Close(context.WithoutCancel(ctx))
		l.conn = nil
	}
	pc, err := l.store.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("leader election: %w", err)
	}
	var ok bool
	if err := pc.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&ok); err != nil {
		pc.Release()
		return false, fmt.Errorf("leader election: %w", err)
	}
	if !ok {
		pc.Release()
		return false, nil
	}
	// The lock lives with the session: keep the connection out of the pool.
	l.conn = pc.Hijack()
	return true, nil
}

// Close gives the role up.
func (l *Leader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	// Unlock first: the server ends a closed session's locks only when its
	// backend exits, a moment after the connection closes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, uerr := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
	err := l.conn.Close(ctx)
	l.conn = nil
	return errors.Join(uerr, err)
}
