package ca

import (
	"strings"
	"testing"

	"github.com/fleetpki/fleetpki/pki"
)

// drain returns the events waiting in ch without blocking.
func drain(ch <-chan pki.RevocationEvent) []pki.RevocationEvent {
	var out []pki.RevocationEvent
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func TestRevoke(t *testing.T) {
	st := newMemStore()
	c := newTestCA(t, st)
	events, cancel := c.Subscribe(16)
	defer cancel()
	iss := issue(t, c, "leaky-1")
	actor := pki.Actor{Name: "cli:ops"}

	rec, err := c.Revoke(t.Context(), iss.Record.Serial, pki.ReasonKeyCompromise, actor)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != pki.CertRevoked || rec.Reason != pki.ReasonKeyCompromise || rec.RevokedAt == nil {
		t.Errorf("record = %+v, want revoked for keyCompromise", rec)
	}
	got := drain(events)
	if len(got) != 1 || got[0].Serial != iss.Record.Serial || got[0].DeviceID != "leaky-1" ||
		got[0].Reason != pki.ReasonKeyCompromise || got[0].IssuerKeyID != iss.Record.IssuerKeyID || !got[0].RevokedAt.Equal(*rec.RevokedAt) {
		t.Errorf("events = %+v, want one for %s", got, iss.Record.Serial)
	}
	_, eventsBefore := st.counts()
	evs := st.events()
	if last := evs[len(evs)-1]; last.Action != pki.ActionCertificateRevoke || last.Target != string(iss.Record.Serial) ||
		last.Details["reason"] != "keyCompromise" || last.Actor != actor {
		t.Errorf("audit event = %+v", last)
	}

	t.Run("ok/idempotent", func(t *testing.T) {
		// Written in another case (colons, upper case): the same certificate.
		again, err := c.Revoke(t.Context(), pki.Serial(colonUpper(string(iss.Record.Serial))), pki.ReasonSuperseded, actor)
		if err != nil {
			t.Fatal(err)
		}
		if again.Reason != pki.ReasonKeyCompromise || !again.RevokedAt.Equal(*rec.RevokedAt) {
			t.Errorf("second revoke changed the record: %+v", again)
		}
		if _, n := st.counts(); n != eventsBefore {
			t.Errorf("audit events %d → %d: a repeated revoke wrote an event", eventsBefore, n)
		}
		if got := drain(events); len(got) != 0 {
			t.Errorf("a repeated revoke published %d events", len(got))
		}
	})
	t.Run("not found/unknown serial", func(t *testing.T) {
		if _, err := c.Revoke(t.Context(), "abcdef0123456789", pki.ReasonUnspecified, actor); !isKind(err, pki.NotFound) {
			t.Errorf("err = %v, want pki.NotFound", err)
		}
	})
	for name, tc := range map[string]struct {
		serial pki.Serial
		reason pki.RevocationReason
	}{
		"invalid/certificateHold":  {iss.Record.Serial, pki.ReasonCertificateHold},
		"invalid/removeFromCRL":    {iss.Record.Serial, pki.ReasonRemoveFromCRL},
		"invalid/unused code 7":    {iss.Record.Serial, 7},
		"invalid/serial not hex":   {"xyz", pki.ReasonUnspecified},
		"invalid/empty serial":     {"", pki.ReasonUnspecified},
		"invalid/serial too large": {pki.Serial(strings.Repeat("f", 41)), pki.ReasonUnspecified},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.Revoke(t.Context(), tc.serial, tc.reason, actor); !isKind(err, pki.Invalid) {
				t.Errorf("err = %v, want pki.Invalid", err)
			}
		})
	}
}

// colonUpper writes a serial the way openssl prints it: "0A:1B:…".
func colonUpper(hex string) string {
	if len(hex)%2 == 1 {
		hex = "0" + hex
	}
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		parts = append(parts, strings.ToUpper(hex[i:i+2]))
	}
	return strings.Join(parts, ":")
}

func TestRevokeDevice(t *testing.T) {
	st := newMemStore()
	c := newTestCA(t, st)
	events, cancel := c.Subscribe(16)
	defer cancel()
	a, b, other := issue(t, c, "gw-7"), issue(t, c, "gw-7"), issue(t, c, "gw-8")
	already := issue(t, c, "gw-7")
	if _, err := c.Revoke(t.Context(), already.Record.Serial, pki.ReasonSuperseded, pki.Actor{}); err != nil {
		t.Fatal(err)
	}
	drain(events)

	recs, err := c.RevokeDevice(t.Context(), "gw-7", pki.ReasonCessationOfOperation, pki.Actor{Name: "web:alice"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[pki.Serial]bool{}
	for _, r := range recs {
		got[r.Serial] = true
	}
	if len(recs) != 2 || !got[a.Record.Serial] || !got[b.Record.Serial] {
		t.Errorf("revoked %v, want exactly %s and %s", recs, a.Record.Serial, b.Record.Serial)
	}
	evs := drain(events)
	if len(evs) != 2 {
		t.Errorf("published %d events, want 2 (one per newly revoked certificate)", len(evs))
	}
	for _, ev := range evs {
		if !got[ev.Serial] || ev.Reason != pki.ReasonCessationOfOperation || ev.DeviceID != "gw-7" {
			t.Errorf("event %+v", ev)
		}
	}
	if s, _ := st.GetCertificate(t.Context(), other.Record.Serial); s.Status != pki.CertValid {
		t.Error("another device's certificate was revoked")
	}
	auditLog := st.events()
	if last := auditLog[len(auditLog)-1]; last.Action != pki.ActionDeviceRevoke || last.Target != "gw-7" || last.Details["reason"] != "cessationOfOperation" {
		t.Errorf("audit event = %+v", last)
	}

	t.Run("ok/idempotent", func(t *testing.T) {
		_, before := st.counts()
		recs, err := c.RevokeDevice(t.Context(), "gw-7", pki.ReasonCessationOfOperation, pki.Actor{})
		if err != nil || len(recs) != 0 {
			t.Errorf("RevokeDevice again = %v, %v; want none, nil", recs, err)
		}
		if _, after := st.counts(); after != before || len(drain(events)) != 0 {
			t.Error("a repeated device revocation wrote or published events")
		}
	})
	t.Run("not found/unknown device", func(t *testing.T) {
		if _, err := c.RevokeDevice(t.Context(), "nobody", pki.ReasonUnspecified, pki.Actor{}); !isKind(err, pki.NotFound) {
			t.Errorf("err = %v, want pki.NotFound", err)
		}
	})
	t.Run("invalid/bad id and reason", func(t *testing.T) {
		if _, err := c.RevokeDevice(t.Context(), "a/b", pki.ReasonUnspecified, pki.Actor{}); !isKind(err, pki.Invalid) {
			t.Errorf("bad id: err = %v, want pki.Invalid", err)
		}
		if _, err := c.RevokeDevice(t.Context(), "gw-7", pki.ReasonCertificateHold, pki.Actor{}); !isKind(err, pki.Invalid) {
			t.Errorf("certificateHold: err = %v, want pki.Invalid", err)
		}
	})
}

func TestSubscribe(t *testing.T) {
	c := newTestCA(t, nil)
	t.Run("ok/slow subscriber does not block revocation", func(t *testing.T) {
		slow, cancelSlow := c.Subscribe(1)
		defer cancelSlow()
		fast, cancelFast := c.Subscribe(16)
		defer cancelFast()
		before := c.DroppedEvents()
		for i := range 3 {
			iss := issue(t, c, "slow-"+string(rune('a'+i)))
			if _, err := c.Revoke(t.Context(), iss.Record.Serial, pki.ReasonUnspecified, pki.Actor{}); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(drain(slow)); n != 1 {
			t.Errorf("slow subscriber got %d events, want 1 (its buffer)", n)
		}
		if n := len(drain(fast)); n != 3 {
			t.Errorf("fast subscriber got %d events, want 3", n)
		}
		if d := c.DroppedEvents() - before; d != 2 {
			t.Errorf("dropped = %d, want 2", d)
		}
	})
	t.Run("ok/cancel closes and unsubscribes", func(t *testing.T) {
		ch, cancel := c.Subscribe(0)
		if cap(ch) != DefaultSubscriberBuffer {
			t.Errorf("buffer = %d, want default %d", cap(ch), DefaultSubscriberBuffer)
		}
		cancel()
		cancel() // twice is harmless
		if _, ok := <-ch; ok {
			t.Error("channel not closed after cancel")
		}
		iss := issue(t, c, "after-cancel")
		if _, err := c.Revoke(t.Context(), iss.Record.Serial, pki.ReasonUnspecified, pki.Actor{}); err != nil {
			t.Fatal(err) // publishing to a cancelled subscriber would panic on the closed channel
		}
	})
}
