// Package crl publishes the issuing CA's certificate revocation list: an
// Updater that regenerates it every period and soon after every revocation,
// and an HTTP handler that serves the latest one.
//
// Policy: a CRL's number only grows (it comes from the store, and a stored
// CRL is replaced only by a higher number, so replicas cannot go back); a
// CRL past its nextUpdate is never served; every CRL carries an Issuing
// Distribution Point equal to the CRL Distribution Point of the
// certificates, which some brokers require.
package crl

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Store is what the updater needs from persistence.
type Store interface {
	RevokedCerts(ctx context.Context, issuerKeyID string, notAfterAfter, revokedSince time.Time) iter.Seq2[pki.RevokedCert, error]
	NextCRLNumber(ctx context.Context, issuerKeyID string) (int64, error)
	SaveCRL(ctx context.Context, c pki.CRL) (bool, error)
	LatestCRL(ctx context.Context, issuerKeyID string) (pki.CRL, error)
	LatestCRLNumber(ctx context.Context, issuerKeyID string) (int64, error)
}

// Config configures an Updater.
type Config struct {
	Issuer *x509.Certificate
	Signer crypto.Signer
	Store  Store
	// URL is the CRL's own address, as in the certificates' CRL Distribution
	// Point; it may be empty only with CACerts, for CA certificates made
	// without a CRL Distribution Point.
	URL string
	// Validity is nextUpdate - thisUpdate (default 7 days).
	Validity time.Duration
	// Period is the regeneration interval (default 1 hour); it must be well
	// under Validity so that a CRL is always replaced before it expires.
	Period time.Duration
	// Debounce gathers revocations that arrive together into one CRL (default 500 ms).
	Debounce time.Duration
	// CACerts marks a CRL that covers CA certificates (the root's CRL, for
	// the intermediate) instead of end-entity certificates, in its IDP.
	CACerts bool
	// NoDelta turns delta CRLs off; by default each run also makes a delta.
	NoDelta bool
	// Leader, when set, says whether this process generates the CRLs; the
	// others (replicas on one database) follow: they load what the leader
	// stored, checking every FollowInterval (default 1 s). Nil: always lead.
	Leader         func(context.Context) (bool, error)
	FollowInterval time.Duration
	Clock          pki.Clock
	Logger         *slog.Logger
}

// Updater keeps the issuing CA's CRL fresh.
type Updater struct {
	cfg   Config
	keyID string

	mu     sync.RWMutex
	latest *pki.CRL
	base   *pki.CRL // the complete CRL deltas refer to
	delta  *pki.CRL
	// leading records the last leadership answer, to log takeovers.
	leading bool
}

// New checks cfg and returns an Updater.
func New(cfg Config) (*Updater, error) {
	if cfg.Validity == 0 {
		cfg.Validity = 7 * 24 * time.Hour
	}
	if cfg.Period == 0 {
		cfg.Period = time.Hour
	}
	if cfg.FollowInterval == 0 {
		cfg.FollowInterval = time.Second
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 500 * time.Millisecond
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Issuer == nil || cfg.Signer == nil || cfg.Store == nil:
		return nil, errors.New("crl: Issuer, Signer and Store are required")
	case cfg.URL == "" && !cfg.CACerts:
		return nil, errors.New("crl: URL is required (the Issuing Distribution Point)")
	case cfg.Period*2 > cfg.Validity:
		return nil, fmt.Errorf("crl: the period (%s) must be at most half the validity (%s)", cfg.Period, cfg.Validity)
	case cfg.Issuer.KeyUsage&x509.KeyUsageCRLSign == 0 || len(cfg.Issuer.SubjectKeyId) == 0:
		return nil, errors.New("crl: the issuer needs KeyUsage cRLSign and a subject key identifier")
	}
	return &Updater{cfg: cfg, keyID: hex.EncodeToString(cfg.Issuer.SubjectKeyId)}, nil
}

// Latest returns the current CRL: the one in memory, else the stored one;
// pki.NotFound when there is none that is still valid.
func (u *Updater) Latest(ctx context.Context) (pki.CRL, error) {
	now := u.cfg.Clock.Now()
	u.mu.RLock()
	l := u.latest
	u.mu.RUnlock()
	if l != nil && now.Before(l.NextUpdate) {
		return *l, nil
	}
	c, err := u.cfg.Store.LatestCRL(ctx, u.keyID)
	if err != nil {
		return pki.CRL{}, err
	}
	if !now.Before(c.NextUpdate) {
		return pki.CRL{}, pki.Errorf(pki.NotFound, "the stored CRL expired at %s", c.NextUpdate)
	}
	u.remember(c)
	return c, nil
}

func (u *Updater) remember(c pki.CRL) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.latest == nil || c.Number > u.latest.Number {
		u.latest = &c
	}
}

// RunOnce generates, signs and stores a new complete CRL and, after it, a
// delta CRL on the current base: the complete CRL made at least a period
// ago (so the delta lists at most about a period of revocations).
func (u *Updater) RunOnce(ctx context.Context) (pki.CRL, error) {
	now := u.cfg.Clock.Now().UTC().Truncate(time.Second)
	full, err := u.generate(ctx, now, nil)
	if err != nil {
		return pki.CRL{}, err
	}
	u.remember(full)
	if u.cfg.NoDelta {
		return full, nil
	}
	u.mu.Lock()
	if u.base == nil || !now.Before(u.base.ThisUpdate.Add(u.cfg.Period)) {
		u.base = &full
	}
	base := *u.base
	u.mu.Unlock()
	delta, err := u.generate(ctx, now, &base)
	if err != nil {
		return pki.CRL{}, err
	}
	u.mu.Lock()
	u.delta = &delta
	u.mu.Unlock()
	return full, nil
}

// deltaKeyID is the store key of an issuer's delta CRL.
func (u *Updater) deltaKeyID() string { return u.keyID + ":delta" }

// generate makes and stores one CRL: complete when base is nil, else a
// delta listing what was revoked since (a minute before, for clock skew)
// the base was made.
func (u *Updater) generate(ctx context.Context, now time.Time, base *pki.CRL) (pki.CRL, error) {
	nextUpdate := now.Add(u.cfg.Validity)
	n, err := u.cfg.Store.NextCRLNumber(ctx, u.keyID)
	if err != nil {
		return pki.CRL{}, fmt.Errorf("crl: number: %w", err)
	}
	idp, err := issuingDistributionPoint(u.cfg.URL, u.cfg.CACerts)
	if err != nil {
		return pki.CRL{}, err
	}
	var since time.Time
	var deltaBase int64
	key, kind := u.keyID, "complete"
	if base != nil {
		since, deltaBase, key, kind = base.ThisUpdate.Add(-time.Minute), base.Number, u.deltaKeyID(), "delta"
	}
	next, stop := iter.Pull2(u.cfg.Store.RevokedCerts(ctx, u.keyID, now, since))
	defer stop()
	entries := 0
	der, err := encodeCRL(u.cfg.Issuer, u.cfg.Signer, n, deltaBase, now, nextUpdate, idp, func() (entry, bool, error) {
		c, err, ok := next()
		if !ok {
			return entry{}, false, nil
		}
		if err != nil {
			return entry{}, false, fmt.Errorf("crl: list revoked: %w", err)
		}
		entries++
		return entry{serial: c.Serial, at: c.RevokedAt, reason: c.Reason}, true, nil
	})
	if err != nil {
		return pki.CRL{}, err
	}
	c := pki.CRL{IssuerKeyID: key, Number: n, DER: der, ThisUpdate: now, NextUpdate: nextUpdate}
	if _, err := u.cfg.Store.SaveCRL(ctx, c); err != nil {
		return pki.CRL{}, fmt.Errorf("crl: save: %w", err)
	}
	u.cfg.Logger.InfoContext(ctx, "CRL published", "kind", kind, "number", n, "base", deltaBase, "entries", entries, "next_update", nextUpdate)
	return c, nil
}

// LatestDelta returns the current delta CRL: the one in memory, else the
// stored one; pki.NotFound when there is none that is still valid.
func (u *Updater) LatestDelta(ctx context.Context) (pki.CRL, error) {
	if u.cfg.NoDelta {
		return pki.CRL{}, pki.Errorf(pki.NotFound, "this CRL has no deltas")
	}
	now := u.cfg.Clock.Now()
	u.mu.RLock()
	d := u.delta
	u.mu.RUnlock()
	if d != nil && now.Before(d.NextUpdate) {
		return *d, nil
	}
	c, err := u.cfg.Store.LatestCRL(ctx, u.deltaKeyID())
	if err != nil {
		return pki.CRL{}, err
	}
	if !now.Before(c.NextUpdate) {
		return pki.CRL{}, pki.Errorf(pki.NotFound, "the stored delta CRL expired at %s", c.NextUpdate)
	}
	return c, nil
}

// Run regenerates the CRL every period and, debounced, after revocation
// events, until ctx ends; failures are logged and retried with backoff. A
// follower (see Config.Leader) loads the leader's CRLs instead, and takes
// over when the leader goes away.
func (u *Updater) Run(ctx context.Context, events <-chan pki.RevocationEvent) error {
	tick := time.NewTicker(u.cfg.Period)
	defer tick.Stop()
	var follow <-chan time.Time
	if u.cfg.Leader != nil {
		t := time.NewTicker(u.cfg.FollowInterval)
		defer t.Stop()
		follow = t.C
	}
	var debounce <-chan time.Time
	backoff := time.Second
	// A CRL made moments ago (by the caller, at start) need not be made again.
	u.mu.RLock()
	fresh := u.latest != nil && u.cfg.Clock.Now().Sub(u.latest.ThisUpdate) < u.cfg.Period/2
	u.mu.RUnlock()
	for {
		if fresh {
			fresh = false
		} else if err := u.step(ctx, false); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			u.cfg.Logger.ErrorContext(ctx, "CRL generation failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				break wait
			case <-follow:
				if err := u.step(ctx, true); err != nil && ctx.Err() == nil {
					u.cfg.Logger.WarnContext(ctx, "following the CRL leader failed", "err", err)
				}
			case _, ok := <-events:
				if !ok {
					events = nil
				} else if debounce == nil {
					debounce = time.After(u.cfg.Debounce)
				}
			case <-debounce:
				debounce = nil
				break wait
			}
		}
	}
}

// Update generates the CRLs when this process leads (see Config.Leader),
// else loads the leader's stored ones.
func (u *Updater) Update(ctx context.Context) error { return u.step(ctx, false) }

// step generates the CRLs when this process leads; a follower loads newer
// stored ones instead. onlyIfNewLeader (the follow tick) generates only when
// leadership was just taken over, not at every tick.
func (u *Updater) step(ctx context.Context, onlyIfNewLeader bool) error {
	if u.cfg.Leader == nil {
		if onlyIfNewLeader {
			return nil
		}
		_, err := u.RunOnce(ctx)
		return err
	}
	lead, err := u.cfg.Leader(ctx)
	if err != nil {
		return fmt.Errorf("crl: leader election: %w", err)
	}
	u.mu.Lock()
	took := lead && !u.leading
	u.leading = lead
	u.mu.Unlock()
	if took {
		u.cfg.Logger.InfoContext(ctx, "generating the CRLs for the replicas", "issuer_key_id", u.keyID)
	}
	if lead && (took || !onlyIfNewLeader) {
		_, err := u.RunOnce(ctx)
		return err
	}
	if lead {
		return nil
	}
	return u.Follow(ctx)
}

// Follow loads the stored CRLs when they are newer than the ones in memory.
func (u *Updater) Follow(ctx context.Context) error {
	for _, key := range []string{u.keyID, u.deltaKeyID()} {
		if key == u.deltaKeyID() && u.cfg.NoDelta {
			continue
		}
		n, err := u.cfg.Store.LatestCRLNumber(ctx, key)
		if err != nil {
			return err
		}
		u.mu.RLock()
		cur := u.latest
		if key != u.keyID {
			cur = u.delta
		}
		u.mu.RUnlock()
		if n == 0 || (cur != nil && cur.Number >= n) {
			continue
		}
		c, err := u.cfg.Store.LatestCRL(ctx, key)
		if err != nil {
			return err
		}
		if key == u.keyID {
			u.remember(c)
		} else {
			u.mu.Lock()
			u.delta = &c
			u.mu.Unlock()
		}
	}
	return nil
}

// issuingDistributionPoint builds the IDP extension (RFC 5280 §5.2.5) naming
// url as the full name, for a CRL of end-entity certificates only, or of CA
// certificates only when caCerts is true. Without a url the IDP names no
// distribution point: verifiers such as OpenSSL match a CRL whose IDP names
// one only to certificates whose CRL Distribution Point names the same.
func issuingDistributionPoint(url string, caCerts bool) (pkix.Extension, error) {
	type idp struct {
		DistributionPoint     asn1.RawValue `asn1:"optional"`
		OnlyContainsUserCerts bool          `asn1:"optional,tag:1"`
		OnlyContainsCACerts   bool          `asn1:"optional,tag:2"`
	}
	v := idp{OnlyContainsUserCerts: !caCerts, OnlyContainsCACerts: caCerts}
	if url != "" {
		// DistributionPointName is a CHOICE, so its [0] tag in the IDP is
		// explicit, around fullName's implicit [0] GeneralNames; encoding/asn1
		// cannot say that with struct tags, hence the raw values.
		name, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(url)})
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("crl: issuing distribution point: %w", err)
		}
		fullName, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: name})
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("crl: issuing distribution point: %w", err)
		}
		v.DistributionPoint = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: fullName}
	}
	b, err := asn1.Marshal(v)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("crl: issuing distribution point: %w", err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: b}, nil
}
