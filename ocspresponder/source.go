package ocspresponder

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/fleetpki/fleetpki/pki"
)

// Response is a signed OCSP response and the times that govern caching it.
type Response struct {
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	// Answer is "good", "revoked" or "unknown", for metrics.
	Answer string
	// Fresh marks a response made for this request alone (it echoes a
	// nonce): not to be cached by anyone.
	Fresh bool
	// Cache says where the response came from, for metrics: "memory",
	// "store" (pre-signed), "signed" (a miss, signed now) or "nonce".
	Cache string

	// Precomputed HTTP headers of a cached response (see headers).
	etag, lastModified, expires string
	// The same as header values, made once (the slices are capped, so an
	// append by a later handler copies instead of writing into them).
	hETag, hLastModified, hExpires, hLength []string
}

// headers computes, once per response, the header values the responder
// sends with it.
func (r *Response) headers() {
	sum := sha256.Sum256(r.DER)
	r.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	r.lastModified = r.ThisUpdate.UTC().Format(http.TimeFormat)
	r.expires = r.NextUpdate.UTC().Format(http.TimeFormat)
	one := func(v string) []string { return []string{v}[:1:1] }
	r.hETag, r.hLastModified, r.hExpires, r.hLength = one(r.etag), one(r.lastModified), one(r.expires), one(strconv.Itoa(len(r.DER)))
}

// Source answers one parsed request.
type Source interface {
	Response(ctx context.Context, req *Request) (*Response, error)
}

// Errors a Source returns for answers that are OCSP error responses.
var (
	// ErrUnauthorized: the request is about a certificate of another issuer.
	ErrUnauthorized = errors.New("not authorized for this issuer")
	// ErrTryLater: the status cannot be known right now.
	ErrTryLater = errors.New("status unavailable")
)

// StatusReader reads a certificate's stored state.
type StatusReader interface {
	GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
}

// filterSource answers unauthorized for requests whose issuer is not ours,
// before the wrapped source (and so the store) is touched.
type filterSource struct {
	issuer    *x509.Certificate
	next      Source
	nameHash  map[crypto.Hash][]byte
	keyHashes map[crypto.Hash][]byte
}

// NewFilterSource wraps next with the issuer check for issuer.
func NewFilterSource(issuer *x509.Certificate, next Source) (Source, error) {
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, fmt.Errorf("issuer public key: %w", err)
	}
	f := &filterSource{issuer: issuer, next: next, nameHash: map[crypto.Hash][]byte{}, keyHashes: map[crypto.Hash][]byte{}}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		n := h.New()
		n.Write(issuer.RawSubject)
		f.nameHash[h] = n.Sum(nil)
		k := h.New()
		k.Write(spki.PublicKey.RightAlign())
		f.keyHashes[h] = k.Sum(nil)
	}
	return f, nil
}

func (f *filterSource) Response(ctx context.Context, req *Request) (*Response, error) {
	if !bytes.Equal(f.nameHash[req.HashAlgorithm], req.IssuerNameHash) || !bytes.Equal(f.keyHashes[req.HashAlgorithm], req.IssuerKeyHash) {
		return nil, ErrUnauthorized
	}
	return f.next.Response(ctx, req)
}

// CacheConfig configures the signing, caching source.
type CacheConfig struct {
	Signer *Signer
	Status StatusReader
	// Validity is a response's life (nextUpdate - thisUpdate); responses are
	// re-signed once half of it has passed.
	Validity time.Duration
	Clock    pki.Clock
	// NonceRate and NonceBurst bound the responses signed for one request
	// (those echoing a nonce) per second: each costs a signature, so a flood
	// of nonce requests could otherwise take the CPU from everyone. Past the
	// limit a nonce request gets the cached response, without the nonce
	// (clients accept that; OpenSSL warns). Default 2,000/s, burst 4,000.
	NonceRate  float64
	NonceBurst int
	// UnknownRate and UnknownBurst bound the "unknown" answers signed per
	// second, for serials this CA never issued: anyone can ask about any
	// number, so such answers are neither cached nor unbounded. Past the
	// limit the answer is "unauthorized" (unsigned). Default 200/s, burst 400.
	UnknownRate  float64
	UnknownBurst int
	// Responses, when set, holds pre-signed responses (see Presigner): a
	// miss in memory takes the stored one if it is fresh and states the
	// certificate's current status, and a response signed on a miss is stored.
	Responses ResponseStore
}

// CacheSource signs responses from the stored status and keeps them until
// half their validity has passed, so the hot path is a map lookup; a
// revocation drops the certificate's entry at once (Revoked).
type CacheSource struct {
	cfg      CacheConfig
	signer   atomic.Pointer[Signer]
	nonces   *rate.Limiter
	unknowns *rate.Limiter

	mu      sync.RWMutex
	entries map[cacheKey]*Response
}

type cacheKey struct {
	serial pki.Serial
	hash   crypto.Hash
}

// maxEntries bounds the cache; past it, the cache starts afresh (a rare,
// cheap event: entries are re-signed on demand).
const maxEntries = 1 << 20

// NewCacheSource checks cfg and returns the source.
func NewCacheSource(cfg CacheConfig) (*CacheSource, error) {
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Validity <= 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.Status == nil {
		return nil, errors.New("ocsp: a status reader is required")
	}
	if err := cfg.Signer.Validate(cfg.Clock.Now()); err != nil {
		return nil, err
	}
	if cfg.NonceRate <= 0 {
		cfg.NonceRate = 2000
	}
	if cfg.NonceBurst <= 0 {
		cfg.NonceBurst = 2 * int(cfg.NonceRate)
	}
	if cfg.UnknownRate <= 0 {
		cfg.UnknownRate = 200
	}
	if cfg.UnknownBurst <= 0 {
		cfg.UnknownBurst = 2 * int(cfg.UnknownRate)
	}
	c := &CacheSource{cfg: cfg, entries: map[cacheKey]*Response{}, nonces: rate.NewLimiter(rate.Limit(cfg.NonceRate), cfg.NonceBurst),
		unknowns: rate.NewLimiter(rate.Limit(cfg.UnknownRate), cfg.UnknownBurst)}
	c.signer.Store(cfg.Signer)
	return c, nil
}

// SetSigner replaces the signer (a rotated responder certificate). Cached
// responses stay: they were signed by a certificate that is still valid.
func (c *CacheSource) SetSigner(s *Signer) error {
	if err := s.Validate(c.cfg.Clock.Now()); err != nil {
		return err
	}
	c.signer.Store(s)
	return nil
}

// Ready fails while the signer cannot sign (its certificate expired).
func (c *CacheSource) Ready() error { return c.signer.Load().Validate(c.cfg.Clock.Now()) }

// Response returns the cached response while it is fresh, else signs one.
// A request with a nonce gets the same answer signed anew with its nonce
// echoed (RFC 6960 §4.4.1); nonce answers are not cached.
func (c *CacheSource) Response(ctx context.Context, req *Request) (*Response, error) {
	r, err := c.response(ctx, req)
	if err != nil || req.Nonce == nil || !validNonce(req.Nonce) {
		return r, err // no nonce, or one outside RFC 8954's 1–32 octets: the cacheable answer
	}
	if !c.nonces.Allow() {
		return r, nil // over the signing budget: the cached answer, no nonce
	}
	der, err := withNonce(r.DER, req.Nonce, c.signer.Load(), c.cfg.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	fresh := &Response{DER: der, ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate, Answer: r.Answer, Fresh: true, Cache: "nonce"}
	fresh.headers()
	return fresh, nil
}

func (c *CacheSource) response(ctx context.Context, req *Request) (*Response, error) {
	serial := pki.NewSerial(req.SerialNumber)
	key := cacheKey{serial, req.HashAlgorithm}
	now := c.cfg.Clock.Now()
	c.mu.RLock()
	r := c.entries[key]
	c.mu.RUnlock()
	if r != nil && now.Before(r.ThisUpdate.Add(c.cfg.Validity/2)) {
		return r, nil
	}
	rec, err := c.cfg.Status.GetCertificate(ctx, serial)
	st := Status{Serial: req.SerialNumber}
	answer := "unknown"
	switch {
	case errors.Is(err, pki.NotFound):
		// Unknown: never issued by this CA.
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	case rec.Status == pki.CertRevoked && rec.RevokedAt != nil:
		st.Revoked, st.RevokedAt, st.Reason, answer = true, *rec.RevokedAt, rec.Reason, "revoked"
	default:
		st.Good, answer = true, "good"
	}
	if answer == "unknown" {
		return c.unknown(st, req.HashAlgorithm, now)
	}
	r = c.stored(ctx, rec, req.HashAlgorithm, answer, now)
	if r == nil {
		// thisUpdate a minute back tolerates clients whose clocks run behind.
		this := now.Add(-time.Minute).Truncate(time.Second)
		der, err := c.signer.Load().Sign(st, req.HashAlgorithm, this, this.Add(c.cfg.Validity))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
		}
		r = &Response{DER: der, ThisUpdate: this, NextUpdate: this.Add(c.cfg.Validity), Answer: answer, Cache: "signed"}
		if name, ok := hashName(req.HashAlgorithm); ok && c.cfg.Responses != nil {
			// Best effort: the presigner's sweep covers a failure here.
			_ = c.cfg.Responses.SaveOCSPResponses(ctx, []pki.OCSPResponse{{Serial: serial, Hash: name, Status: rec.Status,
				DER: der, ThisUpdate: this, NextUpdate: r.NextUpdate}})
		}
	}
	r.headers()
	c.mu.Lock()
	if len(c.entries) >= maxEntries {
		c.entries = map[cacheKey]*Response{}
	}
	m := *r // the cached copy says where later hits come from
	m.Cache = "memory"
	c.entries[key] = &m
	c.mu.Unlock()
	return r, nil
}

// unknown signs an "unknown" answer for a serial this CA never issued,
// within its budget, and keeps nothing: the serial is the asker's choice.
func (c *CacheSource) unknown(st Status, h crypto.Hash, now time.Time) (*Response, error) {
	if !c.unknowns.Allow() {
		return nil, fmt.Errorf("%w: over the budget for unknown serials", ErrUnauthorized)
	}
	this := now.Add(-time.Minute).Truncate(time.Second)
	der, err := c.signer.Load().Sign(st, h, this, this.Add(c.cfg.Validity))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	r := &Response{DER: der, ThisUpdate: this, NextUpdate: this.Add(c.cfg.Validity), Answer: "unknown", Cache: "signed"}
	r.headers()
	return r, nil
}

// stored returns the pre-signed response for rec, if there is one that is
// fresh and states rec's current status.
func (c *CacheSource) stored(ctx context.Context, rec pki.CertRecord, h crypto.Hash, answer string, now time.Time) *Response {
	name, ok := hashName(h)
	if c.cfg.Responses == nil || !ok || answer == "unknown" {
		return nil
	}
	sr, err := c.cfg.Responses.GetOCSPResponse(ctx, rec.Serial, name)
	if err != nil || sr.Status != rec.Status || !now.Before(sr.ThisUpdate.Add(c.cfg.Validity/2)) || !now.Before(sr.NextUpdate) {
		return nil
	}
	return &Response{DER: sr.DER, ThisUpdate: sr.ThisUpdate, NextUpdate: sr.NextUpdate, Answer: answer, Cache: "store"}
}

// Signer returns the current signer.
func (c *CacheSource) Signer() *Signer { return c.signer.Load() }

// Revoked drops every cached response of the serial, so the next request
// signs from the new status.
func (c *CacheSource) Revoked(serial pki.Serial) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		delete(c.entries, cacheKey{serial, h})
	}
}

// Run drops the entries of revoked certificates as events arrive, until ctx ends.
func (c *CacheSource) Run(ctx context.Context, events <-chan pki.RevocationEvent) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			c.Revoked(ev.Serial)
		}
	}
}
