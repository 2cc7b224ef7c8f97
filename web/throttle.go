package web

import (
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Sign-in throttling: after too many failures within the window, a user
// name (from anywhere) or an address (for any name) waits out the lockout.
const (
	throttleWindow  = 15 * time.Minute
	throttleLockout = 15 * time.Minute
	maxUserFailures = 5
	maxIPFailures   = 20
	throttleEntries = 100000
)

type failures struct {
	count       int
	first       time.Time
	lockedUntil time.Time
}

type throttle struct {
	clock pki.Clock
	mu    sync.Mutex
	users map[string]*failures
	ips   map[string]*failures
}

func newThrottle(clock pki.Clock) *throttle {
	return &throttle{clock: clock, users: map[string]*failures{}, ips: map[string]*failures{}}
}

// blocked returns how long the user name or the address must still wait.
func (t *throttle) blocked(user, ip string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	var wait time.Duration
	for _, f := range []*failures{t.users[user], t.ips[ip]} {
		if f != nil && now.Before(f.lockedUntil) {
			wait = max(wait, f.lockedUntil.Sub(now))
		}
	}
	return wait
}

func (t *throttle) failed(user, ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	if len(t.users)+len(t.ips) > throttleEntries {
		// Bounded memory under a spray of names: start afresh (rare).
		t.users, t.ips = map[string]*failures{}, map[string]*failures{}
	}
	bump := func(m map[string]*failures, key string, limit int) {
		f := m[key]
		if f == nil || now.Sub(f.first) > throttleWindow {
			f = &failures{first: now}
			m[key] = f
		}
		f.count++
		if f.count >= limit {
			f.lockedUntil = now.Add(throttleLockout)
		}
	}
	bump(t.users, user, maxUserFailures)
	bump(t.ips, ip, maxIPFailures)
}

// succeeded clears a user's failures (not the address's).
func (t *throttle) succeeded(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.users, user)
}
