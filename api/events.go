package api

import (
	"net/http"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// Revocation event stream limits: a stream holds a subscription with a
// buffer, so their number is bounded in all and per authenticated client
// (one client cannot take every slot). Brokers number in the tens.
const (
	eventStreamMax     = 30 * time.Minute // one stream's life; clients reconnect
	maxEventStreams    = 256
	maxStreamsPerUser  = 4
	eventStreamBuffer  = 256
	eventStreamPing    = 15 * time.Second
	eventWriteDeadline = 30 * time.Second
)

// streamSlots counts open streams, in all and per user.
type streamSlots struct {
	mu     sync.Mutex
	total  int
	byUser map[string]int
}

func (s *streamSlots) take(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= maxEventStreams || s.byUser[user] >= maxStreamsPerUser {
		return false
	}
	if s.byUser == nil {
		s.byUser = map[string]int{}
	}
	s.total++
	s.byUser[user]++
	return true
}

func (s *streamSlots) give(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byUser[user]--; s.byUser[user] <= 0 {
		delete(s.byUser, user)
	}
}

// revocationEvents serves GET /api/v1/revocations/events to enforcement
// points (role broker): a server-sent event per committed revocation, so
// that standalone brokers re-check a revoked device at once instead of at
// their next interval. Events are hints (see package revocation); the
// stream is authenticated so that its slots are not anyone's to take.
func (a *API) revocationEvents(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Events == nil {
		writeProblem(w, r, Problem{Status: http.StatusNotFound, Code: "no_such_route", Title: "Not found", Detail: "this server publishes no revocation events"})
		return
	}
	user := userOf(r).Name
	if !a.streams.take(user) {
		w.Header().Set("Retry-After", "30")
		writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Code: "too_many_streams", Title: "Temporarily unavailable",
			Detail: "too many revocation event streams are open (for this client or in all); retry later"})
		return
	}
	defer a.streams.give(user)
	rc := http.NewResponseController(w)
	events, cancel := a.cfg.Events(eventStreamBuffer)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) bool {
		// The listener's write timeout would end the stream: extend it per write.
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteDeadline))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send([]byte(": fleetpki revocation events\n\n")) {
		return
	}
	ping := time.NewTicker(eventStreamPing)
	defer ping.Stop()
	end := time.NewTimer(eventStreamMax)
	defer end.Stop()
	for {
		select {
		case <-a.cfg.Done:
			return
		case <-r.Context().Done():
			return
		case <-end.C:
			return
		case <-ping.C:
			if !send([]byte(": ping\n\n")) {
				return
			}
		case ev, ok := <-events:
			if !ok {
				return
			}
			if !send(revocation.FromDomain(ev).SSE()) {
				return
			}
		}
	}
}

// Subscribe is how the API hears of committed revocations: a feed and a
// function that ends it (ca.CA.Subscribe).
type Subscribe func(buffer int) (<-chan pki.RevocationEvent, func())
