// Package renewal keeps a short-lived certificate fresh: it holds the
// current one, obtains the next at two thirds of its life, and retries a
// failed renewal every RetryEvery while the current one still serves.
// fleetpki's own listeners (HTTPS, MQTT), its OCSP responder and the
// standalone broker's identity each run one.
//
// Policy: a renewal never leaves a gap: the new certificate is installed
// only once it is in hand, and a failure keeps the old one (logged at
// error level, with the time left).
package renewal

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Config configures a Renewer of T (e.g. *tls.Certificate, or an OCSP
// signer).
type Config[T any] struct {
	// Name says what is renewed, in logs: "https", "mqtt", "ocsp responder".
	Name string
	// Issue obtains a new T and the certificate whose validity governs it.
	Issue func(ctx context.Context) (T, *x509.Certificate, error)
	// Installed, when set, is called with each new T once it is current
	// (e.g. to hand a rotated signer to a cache, or write files); an error
	// counts as a failed renewal.
	Installed func(ctx context.Context, v T) error
	// RetryEvery is the pause after a failed renewal (default 1 minute).
	RetryEvery time.Duration
	Clock      pki.Clock
	Logger     *slog.Logger
}

type current[T any] struct {
	v    T
	leaf *x509.Certificate
}

// Renewer holds the current T; Current is safe for concurrent use.
type Renewer[T any] struct {
	cfg Config[T]
	cur atomic.Pointer[current[T]]
}

// New obtains the first T, so that a listener has its certificate before
// it serves; a failure is returned.
func New[T any](ctx context.Context, cfg Config[T]) (*Renewer[T], error) {
	if cfg.Issue == nil {
		return nil, errors.New("renewal: Issue is required")
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Renewer[T]{cfg: cfg}
	if err := r.renew(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Current returns the certificate in force.
func (r *Renewer[T]) Current() T { return r.cur.Load().v }

// Leaf returns the certificate whose validity governs the current T.
func (r *Renewer[T]) Leaf() *x509.Certificate { return r.cur.Load().leaf }

// RenewAt returns when the current certificate is due: two thirds into its
// life, counted from its issuance (NotBefore+pki.Backdate: the CA backdates
// NotBefore, which would otherwise bring a short-lived certificate's
// renewal forward by most of its life).
func (r *Renewer[T]) RenewAt() time.Time {
	leaf := r.Leaf()
	start := leaf.NotBefore.Add(pki.Backdate)
	if !start.Before(leaf.NotAfter) {
		start = leaf.NotBefore
	}
	return start.Add(leaf.NotAfter.Sub(start) * 2 / 3)
}

func (r *Renewer[T]) renew(ctx context.Context) error {
	v, leaf, err := r.cfg.Issue(ctx)
	if err != nil {
		return fmt.Errorf("%s certificate: %w", r.cfg.Name, err)
	}
	if leaf == nil || !leaf.NotAfter.After(leaf.NotBefore) {
		return fmt.Errorf("%s certificate: the issued certificate has no usable validity", r.cfg.Name)
	}
	r.cur.Store(&current[T]{v: v, leaf: leaf})
	if r.cfg.Installed != nil {
		if err := r.cfg.Installed(ctx, v); err != nil {
			return fmt.Errorf("%s certificate: install: %w", r.cfg.Name, err)
		}
	}
	r.cfg.Logger.InfoContext(ctx, "certificate issued", "for", r.cfg.Name, "serial", pki.NewSerial(leaf.SerialNumber), "not_after", leaf.NotAfter)
	return nil
}

// Run renews at two thirds of each certificate's life until ctx ends; a
// failed renewal is retried every RetryEvery.
func (r *Renewer[T]) Run(ctx context.Context) error {
	wait := r.RenewAt().Sub(r.cfg.Clock.Now())
	for {
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := r.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			left := r.Leaf().NotAfter.Sub(r.cfg.Clock.Now())
			r.cfg.Logger.ErrorContext(ctx, "certificate renewal failed; the current one serves on", "for", r.cfg.Name,
				"err", err, "retry_in", r.cfg.RetryEvery, "left", left.Round(time.Second))
			wait = r.cfg.RetryEvery
			continue
		}
		wait = r.RenewAt().Sub(r.cfg.Clock.Now())
	}
}
