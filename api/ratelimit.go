package api

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds one token bucket per enrollment credential, so that one
// runaway station cannot starve the others. Buckets idle for longer than
// idleAfter are dropped (a full bucket is what a new one would be anyway),
// which bounds memory by the number of recently active credentials.
type limiters struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

const idleAfter = 10 * time.Minute

func newLimiters(perSecond float64, burst int, now func() time.Time) *limiters {
	if perSecond <= 0 {
		return nil // unlimited
	}
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &limiters{rate: rate.Limit(perSecond), burst: burst, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token of the credential's bucket, or says how long to wait
// for one. A nil *limiters allows everything.
func (l *limiters) allow(credentialID string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleAfter {
		for id, b := range l.buckets {
			if now.Sub(b.used) > idleAfter {
				delete(l.buckets, id)
			}
		}
		l.swept = now
	}
	b := l.buckets[credentialID]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[credentialID] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// retryAfterSeconds formats a Retry-After value, rounded up to whole seconds.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}
