// Package remote is the standalone broker's RevocationChecker: it asks a
// fleetpki OCSP responder over HTTP (falling back on a CRL), caches good
// answers briefly and revoked ones for good, and fails closed unless a grace
// period for devices last known good is configured.
package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// Config configures a Checker.
type Config struct {
	// URL is the OCSP responder to ask; empty uses each certificate's AIA OCSP URL.
	URL string
	// CRLURL, when set, is asked when no OCSP answer can be had.
	CRLURL string
	// Timeout bounds one OCSP or CRL fetch (default 2 s).
	Timeout time.Duration
	// MaxAge caps how long a good answer is trusted, even if its nextUpdate
	// is later (default 5 min).
	MaxAge time.Duration
	// FailOpenGrace admits a device whose last good answer is at most this
	// old when no fresh answer can be had; 0 fails closed.
	FailOpenGrace time.Duration
	HTTPClient    *http.Client
	Registerer    prometheus.Registerer
	Clock         pki.Clock
	Logger        *slog.Logger
}

// Checker checks certificates over OCSP. It is safe for concurrent use.
type Checker struct {
	cfg     Config
	flight  singleflight.Group
	results *prometheus.CounterVec
	latency prometheus.Histogram

	mu      sync.Mutex
	answers map[string]answer // by issuer and serial
	crl     *cachedCRL
}

// answer is what is known about one certificate.
type answer struct {
	revoked bool
	at      time.Time // when it was learned
	until   time.Time // a good answer is trusted until then
}

type cachedCRL struct {
	issuer  []byte // the certificate that verified it
	revoked map[string]bool
	until   time.Time
}

// maxAnswers bounds the cache of answers.
const maxAnswers = 1 << 20

// New checks cfg and returns a Checker.
func New(cfg Config) (*Checker, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Minute
	}
	if cfg.FailOpenGrace < 0 {
		return nil, errors.New("remote checker: the fail-open grace must not be negative")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checker{cfg: cfg, answers: map[string]answer{},
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetpki_broker_revocation_checks_total",
			Help: "Revocation checks by result: cached, good, revoked, crl_good, crl_revoked, grace, failed."}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetpki_broker_ocsp_fetch_seconds",
			Help: "Time to fetch and verify one OCSP answer.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.results); err != nil {
			return nil, fmt.Errorf("remote checker metrics: %w", err)
		}
		if err := cfg.Registerer.Register(c.latency); err != nil {
			return nil, fmt.Errorf("remote checker metrics: %w", err)
		}
	}
	return c, nil
}

// Revoked reports leaf's revocation status as its issuer's responder (or
// CRL) states it, from the cache while a good answer is fresh.
func (c *Checker) Revoked(ctx context.Context, leaf, issuer *x509.Certificate) (bool, error) {
	key := answerKey(leaf, issuer)
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	last, known := c.answers[key]
	c.mu.Unlock()
	if known && (last.revoked || now.Before(last.until)) {
		c.results.WithLabelValues("cached").Inc()
		return last.revoked, nil
	}
	// One fetch per serial at a time; it runs under its own deadline so
	// that a caller giving up does not fail the others waiting on it.
	ch := c.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		defer cancel()
		return c.fetch(fctx, leaf, issuer)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		res = singleflight.Result{Err: ctx.Err()}
	}
	if res.Err == nil {
		a := res.Val.(answer)
		c.remember(key, a)
		return a.revoked, nil
	}
	if known && !last.revoked && c.cfg.FailOpenGrace > 0 && now.Sub(last.at) <= c.cfg.FailOpenGrace {
		c.results.WithLabelValues("grace").Inc()
		c.cfg.Logger.WarnContext(ctx, "no fresh revocation status; admitting on the last good answer (fail-open grace)",
			"serial", key, "last_good", last.at, "err", res.Err)
		return false, nil
	}
	c.results.WithLabelValues("failed").Inc()
	return false, res.Err
}

// answerKey keys the cache by issuer and serial: serials are unique per
// issuer only.
func answerKey(leaf, issuer *x509.Certificate) string {
	isum := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(isum[:8]) + ":" + leaf.SerialNumber.Text(16)
}

func (c *Checker) remember(key string, a answer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answers) >= maxAnswers {
		c.answers = map[string]answer{}
	}
	c.answers[key] = a
}

// fetch asks OCSP, then the CRL; it returns the first answer it can trust.
func (c *Checker) fetch(ctx context.Context, leaf, issuer *x509.Certificate) (answer, error) {
	a, ocspErr := c.fetchOCSP(ctx, leaf, issuer)
	if ocspErr == nil {
		return a, nil
	}
	if c.cfg.CRLURL == "" {
		return answer{}, ocspErr
	}
	a, crlErr := c.fromCRL(ctx, leaf, issuer)
	if crlErr != nil {
		return answer{}, fmt.Errorf("%w; CRL fallback: %w", ocspErr, crlErr)
	}
	return a, nil
}

func (c *Checker) fetchOCSP(ctx context.Context, leaf, issuer *x509.Certificate) (answer, error) {
	url := c.cfg.URL
	if url == "" {
		if len(leaf.OCSPServer) == 0 {
			return answer{}, errors.New("the certificate names no OCSP responder and none is configured")
		}
		url = leaf.OCSPServer[0]
	}
	start := time.Now()
	now := c.cfg.Clock.Now()
	resp, err := revocation.AskOCSP(ctx, c.cfg.HTTPClient, url, leaf, issuer, now)
	if err != nil {
		return answer{}, err
	}
	c.latency.Observe(time.Since(start).Seconds())
	if resp.Status == ocsp.Revoked {
		c.results.WithLabelValues("revoked").Inc()
		return answer{revoked: true, at: now}, nil
	}
	c.results.WithLabelValues("good").Inc()
	return answer{at: now, until: minTime(resp.NextUpdate, now.Add(c.cfg.MaxAge))}, nil
}

// fromCRL answers from the configured CRL, fetched again once it is older
// than MaxAge or past its nextUpdate.
func (c *Checker) fromCRL(ctx context.Context, leaf, issuer *x509.Certificate) (answer, error) {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	cur := c.crl
	c.mu.Unlock()
	if cur == nil || !now.Before(cur.until) || !bytes.Equal(cur.issuer, issuer.Raw) {
		list, _, err := revocation.FetchCRL(ctx, c.cfg.HTTPClient, c.cfg.CRLURL, issuer, now)
		if err != nil {
			return answer{}, err
		}
		cur = &cachedCRL{issuer: issuer.Raw, revoked: map[string]bool{}, until: minTime(list.NextUpdate, now.Add(c.cfg.MaxAge))}
		for _, e := range list.RevokedCertificateEntries {
			cur.revoked[e.SerialNumber.Text(16)] = true
		}
		c.mu.Lock()
		c.crl = cur
		c.mu.Unlock()
	}
	if cur.revoked[leaf.SerialNumber.Text(16)] {
		c.results.WithLabelValues("crl_revoked").Inc()
		return answer{revoked: true, at: now}, nil
	}
	c.results.WithLabelValues("crl_good").Inc()
	return answer{at: now, until: minTime(cur.until, now.Add(c.cfg.MaxAge))}, nil
}

// Forget drops what the checker knows of a certificate, so that its next
// check asks the responder (a revocation hint arrived).
func (c *Checker) Forget(leaf, issuer *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.answers, answerKey(leaf, issuer))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
