package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// eventStreamMax bounds one event stream connection; clients reconnect.
const eventStreamMax = 30 * time.Minute

// maxEventStreams bounds the open streams: each holds a subscription with a
// buffer, and the endpoint is unauthenticated. Brokers number in the tens.
const maxEventStreams = 256

// revocationEvents serves GET /revocations/events: a server-sent event
// stream of revocations as they commit, so that standalone brokers can
// re-check a revoked device at once instead of at their next interval. The
// events are hints, public like the CRL: a broker confirms each over OCSP
// (signed) before it acts, so a forged event cannot lock a device out.
//
// Streams end when done is closed (the server shutting down: Shutdown does
// not cancel requests, and would otherwise wait for them).
func revocationEvents(done <-chan struct{}, subscribe func(int) (<-chan pki.RevocationEvent, func())) http.HandlerFunc {
	return revocationEventsLimited(done, subscribe, maxEventStreams)
}

func revocationEventsLimited(done <-chan struct{}, subscribe func(int) (<-chan pki.RevocationEvent, func()), limit int) http.HandlerFunc {
	slots := make(chan struct{}, limit)
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			w.Header().Set("Retry-After", "30")
			writeText(w, http.StatusServiceUnavailable, "too many revocation event streams are open; retry later\n")
			return
		}
		rc := http.NewResponseController(w)
		events, cancel := subscribe(256)
		defer cancel()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		send := func(s string) bool {
			// The listener's write timeout would end the stream: extend it per write.
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprint(w, s); err != nil {
				return false
			}
			return rc.Flush() == nil
		}
		if !send(": fleetpki revocation events\n\n") {
			return
		}
		ping := time.NewTicker(15 * time.Second)
		defer ping.Stop()
		end := time.NewTimer(eventStreamMax)
		defer end.Stop()
		for {
			select {
			case <-done:
				return
			case <-r.Context().Done():
				return
			case <-end.C:
				return
			case <-ping.C:
				if !send(": ping\n\n") {
					return
				}
			case ev, ok := <-events:
				if !ok {
					return
				}
				b, _ := json.Marshal(map[string]string{"serial": string(ev.Serial), "issuer_key_id": ev.IssuerKeyID,
					"reason": ev.Reason.String(), "revoked_at": ev.RevokedAt.UTC().Format(time.RFC3339)})
				if !send("event: revoked\ndata: " + string(b) + "\n\n") {
					return
				}
			}
		}
	}
}
