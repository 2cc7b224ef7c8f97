// Package revocation is the client side of fleetpki's revocation
// publication, for whoever must learn of revocations from outside serve:
// the event stream's typed wire format (server-sent events, one per
// committed revocation) and the follower that reads it.
//
// Policy: an event is a hint. Whoever acts on it confirms it first over a
// signed channel (OCSP, the CRL), so a forged or replayed event cannot lock
// a device out; the stream itself is authenticated so that its slots
// cannot be taken by anyone.
package revocation

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// EventName is the server-sent event name of a revocation.
const EventName = "revoked"

// Event is one revocation on the wire.
type Event struct {
	Serial      pki.Serial           `json:"serial"`
	IssuerKeyID string               `json:"issuer_key_id"`
	Reason      pki.RevocationReason `json:"reason"`
	RevokedAt   time.Time            `json:"revoked_at"`
}

// FromDomain converts a committed revocation to its wire form.
func FromDomain(ev pki.RevocationEvent) Event {
	return Event{Serial: ev.Serial, IssuerKeyID: ev.IssuerKeyID, Reason: ev.Reason, RevokedAt: ev.RevokedAt.UTC().Truncate(time.Second)}
}

// SSE encodes the event as one server-sent event.
func (e Event) SSE() []byte {
	b, _ := json.Marshal(e) // a struct of strings and a time cannot fail to encode
	return []byte("event: " + EventName + "\ndata: " + string(b) + "\n\n")
}

// ParseData decodes the data line of a revocation event and checks it.
func ParseData(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("revocation event: %w", err)
	}
	s, err := pki.ParseSerial(string(e.Serial))
	if err != nil {
		return Event{}, fmt.Errorf("revocation event: %w", err)
	}
	e.Serial = s
	return e, nil
}
