package ca

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Revoke revokes one certificate. It is idempotent: revoking a revoked
// certificate returns its stored record (with the original time and reason)
// and writes no new audit event. An unknown serial is pki.NotFound; a reason
// fleetpki does not allow (certificateHold, removeFromCRL, unknown codes) is
// pki.Invalid. A revocation event is published after the commit.
func (c *CA) Revoke(ctx context.Context, serial pki.Serial, reason pki.RevocationReason, actor pki.Actor) (pki.CertRecord, error) {
	s, err := pki.ParseSerial(string(serial))
	if err != nil {
		return pki.CertRecord{}, err
	}
	if !reason.Valid() {
		return pki.CertRecord{}, pki.Errorf(pki.Invalid, "revocation reason %d (%s) is not allowed", int(reason), reason)
	}
	now := c.clock.Now().UTC()
	ev := pki.AuditEvent{Time: now, Actor: actor, Action: pki.ActionCertificateRevoke, Target: string(s),
		Details: map[string]string{"reason": reason.String()}}
	rec, changed, err := c.store.RevokeCertificate(ctx, s, reason, now, ev)
	if err != nil {
		return pki.CertRecord{}, fmt.Errorf("revoke %s: %w", s, err)
	}
	if changed {
		c.log.InfoContext(ctx, "certificate revoked", "serial", s, "device_id", rec.DeviceID, "reason", reason.String())
		c.feed.publish(c.revocationEvent(rec, reason, now))
	}
	return rec, nil
}

// RevokeDevice revokes every unrevoked, unexpired certificate of the device
// in one store transaction and returns the certificates it revoked (none if
// all were revoked already; then no audit event is written). An unknown
// device is pki.NotFound.
func (c *CA) RevokeDevice(ctx context.Context, deviceID string, reason pki.RevocationReason, actor pki.Actor) ([]pki.CertRecord, error) {
	if err := pki.ValidateDeviceID(deviceID); err != nil {
		return nil, err
	}
	if !reason.Valid() {
		return nil, pki.Errorf(pki.Invalid, "revocation reason %d (%s) is not allowed", int(reason), reason)
	}
	now := c.clock.Now().UTC()
	ev := pki.AuditEvent{Time: now, Actor: actor, Action: pki.ActionDeviceRevoke, Target: deviceID,
		Details: map[string]string{"reason": reason.String()}}
	recs, err := c.store.RevokeDevice(ctx, deviceID, reason, now, ev)
	if err != nil {
		return nil, fmt.Errorf("revoke device %q: %w", deviceID, err)
	}
	if len(recs) > 0 {
		c.log.InfoContext(ctx, "device revoked", "device_id", deviceID, "certificates", len(recs), "reason", reason.String())
	}
	for _, rec := range recs {
		c.feed.publish(c.revocationEvent(rec, reason, now))
	}
	return recs, nil
}

// revocationEvent describes a committed revocation, preferring the stored facts.
func (c *CA) revocationEvent(rec pki.CertRecord, reason pki.RevocationReason, now time.Time) pki.RevocationEvent {
	ev := pki.RevocationEvent{Serial: rec.Serial, DeviceID: rec.DeviceID, IssuerKeyID: rec.IssuerKeyID, RevokedAt: now, Reason: reason}
	if rec.RevokedAt != nil {
		ev.RevokedAt = rec.RevokedAt.UTC()
	}
	if ev.IssuerKeyID == "" {
		ev.IssuerKeyID = c.issuerKeyID
	}
	return ev
}

// DefaultSubscriberBuffer is the channel capacity Subscribe uses when asked for less than 1.
const DefaultSubscriberBuffer = 256

// Subscribe returns a feed of revocation events, each sent after its
// revocation committed, and a function that ends the subscription and closes
// the channel (safe to call more than once). Revocation never waits for a
// subscriber: when the channel is full the event is dropped and counted
// (DroppedEvents), so a subscriber that must not miss revocations sizes its
// buffer generously and, on seeing the count rise, re-reads state from the
// store. buffer < 1 means DefaultSubscriberBuffer.
func (c *CA) Subscribe(buffer int) (<-chan pki.RevocationEvent, func()) {
	if buffer < 1 {
		buffer = DefaultSubscriberBuffer
	}
	return c.feed.subscribe(buffer)
}

// DroppedEvents returns how many revocation events were dropped, over all
// subscribers, because a subscriber's channel was full.
func (c *CA) DroppedEvents() uint64 { return c.feed.dropped.Load() }

// feed fans revocation events out to subscribers without blocking.
type feed struct {
	mu      sync.RWMutex
	subs    map[chan pki.RevocationEvent]struct{}
	dropped atomic.Uint64
	log     *slog.Logger
}

func (f *feed) subscribe(buffer int) (<-chan pki.RevocationEvent, func()) {
	ch := make(chan pki.RevocationEvent, buffer)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[chan pki.RevocationEvent]struct{})
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			// Under the write lock no publish is mid-send, so closing is safe.
			f.mu.Lock()
			delete(f.subs, ch)
			close(ch)
			f.mu.Unlock()
		})
	}
}

func (f *feed) publish(ev pki.RevocationEvent) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
			n := f.dropped.Add(1)
			f.log.Warn("revocation event dropped: a subscriber is not keeping up", "serial", ev.Serial, "dropped_total", n)
		}
	}
}

// publishAll publishes a batch of events (a bulk revocation's), waiting up
// to within in all for subscribers whose channels are full before it drops
// the rest for them: a batch can be far larger than a channel, and the
// subscribers (OCSP cache, CRL, broker) drain theirs fast.
func (f *feed) publishAll(evs []pki.RevocationEvent, within time.Duration) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	f.mu.RLock()
	defer f.mu.RUnlock()
	expired := false
	for _, ev := range evs {
		for ch := range f.subs {
			select {
			case ch <- ev:
				continue
			default:
			}
			if !expired {
				select {
				case ch <- ev:
					continue
				case <-deadline.C:
					expired = true
				}
			}
			n := f.dropped.Add(1)
			f.log.Warn("revocation event dropped: a subscriber is not keeping up", "serial", ev.Serial, "dropped_total", n)
		}
	}
}

// PublishStored publishes a revocation that another process made (or this
// one, heard back through the database): it reads the stored record and,
// if the certificate is revoked, tells the subscribers. Subscribers must
// bear seeing a revocation twice.
func (c *CA) PublishStored(ctx context.Context, serial pki.Serial) error {
	rec, err := c.store.GetCertificate(ctx, serial)
	if err != nil {
		return fmt.Errorf("revocation of %s: %w", serial, err)
	}
	if rec.Status == pki.CertRevoked {
		c.feed.publish(c.revocationEvent(rec, rec.Reason, c.clock.Now()))
	}
	return nil
}
