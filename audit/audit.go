// Package audit reads fleetpki's hash-chained audit log: it verifies the
// chain (whole, or the part added since the last verification) and lists
// events for the API and the admin UI. The store writes the events, each
// in the transaction of the change it records.
//
// Policy: verification reads every event in order and refuses gaps; a page
// that shows the chain often reads the whole of it at most every ten
// minutes and checks only the new events in between.
package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Store is what the audit log is read from.
type Store interface {
	// ListAudit lists events in ascending Seq order after afterSeq.
	ListAudit(ctx context.Context, afterSeq int64, limit int) ([]pki.AuditEvent, error)
	// ListAuditRecent lists the newest events first; with targets, only theirs.
	ListAuditRecent(ctx context.Context, targets []string, limit int) ([]pki.AuditEvent, error)
}

// Log reads and verifies the audit log. It is safe for concurrent use.
type Log struct {
	store Store
	clock pki.Clock

	// The last verified end of the chain, for VerifyRecent.
	mu     sync.Mutex
	seq    int64
	hash   []byte
	fullAt time.Time
}

// New returns a Log over st; clock nil means the system clock.
func New(st Store, clock pki.Clock) *Log {
	if clock == nil {
		clock = pki.SystemClock{}
	}
	return &Log{store: st, clock: clock}
}

// pageSize is how many events a verification reads per query.
const pageSize = 1000

// Verify walks the whole audit log and checks its hash chain. It returns
// the number of events checked; an error names the first bad event.
func (l *Log) Verify(ctx context.Context) (int64, error) {
	n, _, _, err := l.verifyFrom(ctx, 0, nil)
	return n, err
}

// verifyFrom verifies the events after seq after, chained to prev (the
// hash of event after), and returns how many it checked and the new end.
func (l *Log) verifyFrom(ctx context.Context, after int64, prev []byte) (n, last int64, lastHash []byte, err error) {
	for {
		evs, err := l.store.ListAudit(ctx, after, pageSize)
		if err != nil {
			return n, after, prev, fmt.Errorf("verify audit: %w", err)
		}
		for _, e := range evs {
			if e.Seq != after+1 {
				return n, after, prev, fmt.Errorf("audit event %d follows %d: the log has a gap", e.Seq, after)
			}
			after = e.Seq
		}
		if prev, err = pki.VerifyChain(prev, evs); err != nil {
			return n, after, prev, err
		}
		n += int64(len(evs))
		if len(evs) < pageSize {
			return n, after, prev, nil
		}
	}
}

// fullEvery is how often VerifyRecent re-reads the whole log.
const fullEvery = 10 * time.Minute

// Check is the result of VerifyRecent.
type Check struct {
	Events int64     // events in the verified chain
	FullAt time.Time // when the whole chain was last read and verified
}

// VerifyRecent verifies the chain for a page that shows it often: the whole
// chain at most every ten minutes, and in between only the events added
// since, chained to the last verified one. (`fleetpki audit verify` always
// reads everything.)
func (l *Log) VerifyRecent(ctx context.Context) (Check, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.fullAt.IsZero() || now.Sub(l.fullAt) >= fullEvery {
		n, last, hash, err := l.verifyFrom(ctx, 0, nil)
		if err != nil {
			l.fullAt = time.Time{}
			return Check{Events: n}, err
		}
		l.seq, l.hash, l.fullAt = last, hash, now
		return Check{Events: n, FullAt: now}, nil
	}
	_, last, hash, err := l.verifyFrom(ctx, l.seq, l.hash)
	if err != nil {
		l.fullAt = time.Time{} // the next check reads everything again
		return Check{Events: last, FullAt: l.fullAt}, err
	}
	l.seq, l.hash = last, hash
	return Check{Events: last, FullAt: l.fullAt}, nil
}

// List lists events after afterSeq, oldest first.
func (l *Log) List(ctx context.Context, afterSeq int64, limit int) ([]pki.AuditEvent, error) {
	evs, err := l.store.ListAudit(ctx, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return evs, nil
}

// Recent lists the newest events first; with targets, only those about
// them (a device id, its certificates' serials).
func (l *Log) Recent(ctx context.Context, targets []string, limit int) ([]pki.AuditEvent, error) {
	evs, err := l.store.ListAuditRecent(ctx, targets, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return evs, nil
}
