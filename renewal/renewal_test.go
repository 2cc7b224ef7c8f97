package renewal

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// fakeIssuer issues certificates valid for life from the (bubble's) now,
// backdated as fleetpki's CA does, failing while fail is set.
type fakeIssuer struct {
	mu     sync.Mutex
	life   time.Duration
	n      int64
	fail   bool
	issued []time.Time
}

func (f *fakeIssuer) issue(context.Context) (int64, *x509.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.issued = append(f.issued, now)
	if f.fail {
		return 0, nil, errors.New("CA unavailable")
	}
	f.n++
	return f.n, &x509.Certificate{SerialNumber: big.NewInt(f.n), NotBefore: now.Add(-pki.Backdate), NotAfter: now.Add(f.life)}, nil
}

func (f *fakeIssuer) calls() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.issued...)
}

// The renewer renews at two thirds of each certificate's life, retries a
// failed renewal every RetryEvery while the old certificate serves, and
// stops with its context.
func TestRenewsAtTwoThirdsAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeIssuer{life: 30 * time.Hour}
		var installed []int64
		r, err := New(t.Context(), Config[int64]{Name: "test", Issue: f.issue, RetryEvery: time.Minute,
			Installed: func(_ context.Context, v int64) error { installed = append(installed, v); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()

		time.Sleep(20*time.Hour - time.Second)
		synctest.Wait()
		if r.Current() != 1 {
			t.Fatalf("renewed before two thirds: current %d", r.Current())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r.Current() != 2 {
			t.Fatalf("not renewed at two thirds (20 h): current %d", r.Current())
		}
		if got := f.calls()[1].Sub(start); got != 20*time.Hour {
			t.Errorf("second issue after %v, want 20h", got)
		}
		// The next renewal fails three times; the current one serves on.
		f.mu.Lock()
		f.fail = true
		f.mu.Unlock()
		time.Sleep(20*time.Hour + 2*time.Minute + time.Second)
		synctest.Wait()
		if r.Current() != 2 {
			t.Fatalf("a failed renewal replaced the certificate: %d", r.Current())
		}
		calls := f.calls()
		if len(calls) != 5 || calls[3].Sub(calls[2]) != time.Minute || calls[4].Sub(calls[3]) != time.Minute {
			t.Fatalf("issue calls at %v, want a retry every minute after the failure", calls)
		}
		f.mu.Lock()
		f.fail = false
		f.mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		if r.Current() != 3 {
			t.Fatalf("after the CA came back: current %d, want 3", r.Current())
		}
		if len(installed) != 3 || installed[2] != 3 {
			t.Errorf("installed %v", installed)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// A first issue that fails is an error: a listener must not start without
// its certificate.
func TestFirstIssueFails(t *testing.T) {
	f := &fakeIssuer{life: time.Hour, fail: true}
	if _, err := New(t.Context(), Config[int64]{Name: "test", Issue: f.issue}); err == nil {
		t.Fatal("New succeeded without a certificate")
	}
}

// A short-lived certificate is renewed two thirds into the life it was
// issued with, not two thirds from its backdated NotBefore (which, for a
// 15 s certificate backdated a minute, would be before it was issued and
// renew in a tight loop).
func TestShortLivedCountsFromIssuance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeIssuer{life: 15 * time.Second}
		r, err := New(t.Context(), Config[int64]{Name: "test", Issue: f.issue})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if got := r.RenewAt().Sub(start); got != 10*time.Second {
			t.Fatalf("RenewAt = issuance + %v, want 10s", got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if n := len(f.calls()); n != 4 {
			t.Errorf("%d issues in 31 s of 15 s certificates, want 4 (at 0, 10, 20, 30 s)", n)
		}
		cancel()
		<-done
	})
}
