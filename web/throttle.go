package web

import (
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Password-check throttling. An attempt is counted before its password is
// hashed (begin), so concurrent attempts cannot all slip under the limit,
// and settled when the check ends (done). Two keys are counted:
//
//   - a user name from one address: after maxPairFailures failures within
//     throttleWindow, that pair waits out a lockout that doubles with each
//     further lockout, from pairLockout up to maxPairLockout;
//   - an address, whatever the names: maxIPFailures per window.
//
// There is deliberately no lock on a user name from everywhere: it would let
// anyone lock the admin out from their own address. A distributed guesser is
// held by the per-address limits, by the bound on password hashes running at
// once (ca.Accounts), and by the cost of each hash; failures per user from
// all addresses are reported (log and metric) for alerting instead.
const (
	throttleWindow  = 15 * time.Minute
	maxPairFailures = 5
	maxIPFailures   = 20
	pairLockout     = time.Minute
	maxPairLockout  = 15 * time.Minute
	throttleEntries = 100000
	// userAlarm is the failures per user (all addresses) within the window
	// past which each further failure is logged at warn level.
	userAlarm = 20
)

type failures struct {
	count       int // settled failures in the window
	pending     int // attempts being checked now
	first       time.Time
	lockedUntil time.Time
	lockouts    int // lockouts so far, for the doubling
}

type throttle struct {
	clock pki.Clock

	mu    sync.Mutex
	pairs map[string]*failures // user + "\x00" + address
	ips   map[string]*failures
	users map[string]*failures // for alerting only
}

func newThrottle(clock pki.Clock) *throttle {
	return &throttle{clock: clock, pairs: map[string]*failures{}, ips: map[string]*failures{}, users: map[string]*failures{}}
}

// attempt is a password check counted by begin; done settles it.
type attempt struct {
	t             *throttle
	pair, ip, usr string
}

// begin counts an attempt by user from ip before its password is checked.
// It returns how long to wait instead when the pair or the address is over
// its limit, counting the attempts being checked right now.
func (t *throttle) begin(user, ip string) (*attempt, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	pairKey := user + "\x00" + ip
	pair, addr := t.entry(t.pairs, pairKey, now), t.entry(t.ips, ip, now)
	if pair == nil || addr == nil {
		// Over throttleEntries live entries (a spray of names from very many
		// addresses): refuse until some expire rather than forget counts.
		return nil, throttleWindow
	}
	var wait time.Duration
	for _, f := range []*failures{pair, addr} {
		if now.Before(f.lockedUntil) {
			wait = max(wait, f.lockedUntil.Sub(now))
		}
	}
	switch {
	case wait > 0:
	case pair.count+pair.pending >= maxPairFailures:
		wait = pairLockout
	case addr.count+addr.pending >= maxIPFailures:
		wait = throttleWindow - now.Sub(addr.first)
	}
	if wait > 0 {
		return nil, max(wait, time.Second)
	}
	pair.pending++
	addr.pending++
	return &attempt{t: t, pair: pairKey, ip: ip, usr: user}, 0
}

// entry returns the live entry of key, starting a new window when the old
// one has passed; nil when the map is full of live entries.
func (t *throttle) entry(m map[string]*failures, key string, now time.Time) *failures {
	f := m[key]
	if f != nil && now.Sub(f.first) > throttleWindow && !now.Before(f.lockedUntil) && f.pending == 0 {
		f.count, f.first = 0, now
	}
	if f != nil {
		return f
	}
	if len(t.pairs)+len(t.ips)+len(t.users) >= throttleEntries {
		t.sweep(now)
		if len(t.pairs)+len(t.ips)+len(t.users) >= throttleEntries {
			return nil
		}
	}
	f = &failures{first: now}
	m[key] = f
	return f
}

// sweep drops entries whose window and lockout have passed.
func (t *throttle) sweep(now time.Time) {
	for _, m := range []map[string]*failures{t.pairs, t.ips, t.users} {
		for k, f := range m {
			if f.pending == 0 && now.Sub(f.first) > throttleWindow && !now.Before(f.lockedUntil) {
				delete(m, k)
			}
		}
	}
}

// done settles the attempt: a failure is counted (and may lock the pair
// out); a success clears the pair. It returns the failures for the user
// name from all addresses within the window, for alerting.
func (a *attempt) done(ok bool) int {
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	pair, addr := t.pairs[a.pair], t.ips[a.ip]
	for _, f := range []*failures{pair, addr} {
		if f != nil && f.pending > 0 {
			f.pending--
		}
	}
	if ok {
		delete(t.pairs, a.pair)
		return 0
	}
	if pair != nil {
		pair.count++
		if pair.count >= maxPairFailures {
			pair.lockedUntil = now.Add(min(pairLockout<<min(pair.lockouts, 8), maxPairLockout))
			pair.lockouts++
			pair.count, pair.first = 0, now
		}
	}
	if addr != nil {
		addr.count++
		if addr.count >= maxIPFailures {
			addr.lockedUntil = addr.first.Add(throttleWindow)
		}
	}
	u := t.entry(t.users, a.usr, now)
	if u == nil {
		return 0
	}
	u.count++
	return u.count
}
