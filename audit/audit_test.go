package audit

import (
	"context"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// memLog is a logic-only fake of the store's audit log.
type memLog struct{ events []pki.AuditEvent }

func (m *memLog) append(target string) {
	var prev []byte
	if n := len(m.events); n > 0 {
		prev = m.events[n-1].Hash
	}
	ev := pki.AuditEvent{Seq: int64(len(m.events) + 1), Time: time.Unix(1700000000, 0), Action: "user.create", Target: target, PrevHash: prev}
	ev.Hash = ev.ChainHash(prev)
	m.events = append(m.events, ev)
}

func (m *memLog) ListAudit(_ context.Context, after int64, limit int) ([]pki.AuditEvent, error) {
	if after >= int64(len(m.events)) {
		return nil, nil
	}
	end := min(int(after)+limit, len(m.events))
	return append([]pki.AuditEvent(nil), m.events[after:end]...), nil
}

func (m *memLog) ListAuditRecent(context.Context, []string, int) ([]pki.AuditEvent, error) {
	return nil, nil
}

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

func TestVerify(t *testing.T) {
	m := &memLog{}
	for _, n := range []string{"u1", "u2", "u3"} {
		m.append(n)
	}
	l := New(m, nil)
	if n, err := l.Verify(t.Context()); err != nil || n != 3 {
		t.Fatalf("Verify = %d, %v; want 3, nil", n, err)
	}
	m.events[1].Target = "mallory"
	if _, err := l.Verify(t.Context()); err == nil {
		t.Fatal("Verify accepted a tampered event")
	}
	m.events[1].Target = "u2"
	m.events = append(m.events[:1], m.events[2:]...)
	if _, err := l.Verify(t.Context()); err == nil {
		t.Fatal("Verify accepted a gap")
	}
}

// VerifyRecent reads the whole chain at most every ten minutes and only
// the new events in between; tampering is found in new events at once and
// in old ones at the next full read.
func TestVerifyRecent(t *testing.T) {
	ctx := t.Context()
	clock := &fixedClock{time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	m := &memLog{}
	for _, n := range []string{"u1", "u2", "u3"} {
		m.append(n)
	}
	l := New(m, clock)
	c, err := l.VerifyRecent(ctx)
	if err != nil || c.Events != 3 || !c.FullAt.Equal(clock.t) {
		t.Fatalf("first check = %+v, %v", c, err)
	}
	full := c.FullAt
	clock.t = clock.t.Add(time.Minute)
	m.append("u4")
	if c, err = l.VerifyRecent(ctx); err != nil || c.Events != 4 || !c.FullAt.Equal(full) {
		t.Fatalf("incremental check = %+v, %v; want 4 events, the first full read's time", c, err)
	}
	m.append("u5")
	m.events[4].Target = "mallory" // a new event, tampered
	if _, err := l.VerifyRecent(ctx); err == nil {
		t.Fatal("a tampered new event passed the incremental check")
	}
	m.events[4].Target = "u5"
	if c, err = l.VerifyRecent(ctx); err != nil || c.Events != 5 {
		t.Fatalf("after a failure, a full read: %+v, %v", c, err)
	}
	m.events[1].Target = "mallory" // an old event, tampered: found at the next full read
	clock.t = clock.t.Add(fullEvery)
	if _, err := l.VerifyRecent(ctx); err == nil {
		t.Fatal("a tampered old event passed the full check")
	}
}
