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
	"math/big"
	"net/http"
	"strconv"
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

// CacheConfig configures the caching source.
type CacheConfig struct {
	// Signer signs answers the store has no fresh response for. Nil makes
	// a keyless responder (`fleetpki ocsp`): it answers only from stored
	// responses, tryLater when there is none that states the certificate's
	// status, unauthorized for serials never issued, and echoes no nonce.
	Signer *Signer
	// Lookups reads the certificates' status and stored responses.
	Lookups Lookups
	// Validity is a response's life (nextUpdate - thisUpdate); responses are
	// read or signed again once half of it has passed.
	Validity time.Duration
	// CacheBytes bounds the cached answers: their DER and their bookkeeping
	// (default DefaultCacheBytes). Past it, the least used are evicted.
	CacheBytes uint64
	Clock      pki.Clock
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
	// Responses, when set, stores what is signed on a miss, for the other
	// processes and the next start (the Presigner keeps them all fresh).
	Responses ResponseSaver
}

// ResponseSaver stores signed responses.
type ResponseSaver interface {
	SaveOCSPResponses(ctx context.Context, rs []pki.OCSPResponse) error
}

// CacheSource answers from a byte-bounded cache of signed answers; a miss
// reads the certificate's status and stored response (one indexed read,
// batched with the misses that arrive together), and signs only when the
// store has no fresh response stating the current status. A revocation
// drops the certificate's answers at once (Revoked).
type CacheSource struct {
	cfg      CacheConfig
	signer   atomic.Pointer[Signer]
	nonces   *rate.Limiter
	unknowns *rate.Limiter
	answers  *answerCache
	batch    *batcher
}

// NewCacheSource checks cfg and returns the source.
func NewCacheSource(cfg CacheConfig) (*CacheSource, error) {
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Validity <= 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.Lookups == nil {
		return nil, errors.New("ocsp: a status reader (Lookups) is required")
	}
	if cfg.Signer != nil {
		if err := cfg.Signer.Validate(cfg.Clock.Now()); err != nil {
			return nil, err
		}
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
	answers, err := newAnswerCache(cfg.CacheBytes)
	if err != nil {
		return nil, err
	}
	c := &CacheSource{cfg: cfg, answers: answers, batch: &batcher{lookups: cfg.Lookups},
		nonces: rate.NewLimiter(rate.Limit(cfg.NonceRate), cfg.NonceBurst), unknowns: rate.NewLimiter(rate.Limit(cfg.UnknownRate), cfg.UnknownBurst)}
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
func (c *CacheSource) Ready() error {
	if s := c.signer.Load(); s != nil {
		return s.Validate(c.cfg.Clock.Now())
	}
	return nil
}

// Response returns the cached response while it is fresh, else reads or
// signs one. A request with a nonce gets the same answer signed anew with
// its nonce echoed (RFC 6960 §4.4.1); nonce answers are not cached.
func (c *CacheSource) Response(ctx context.Context, req *Request) (*Response, error) {
	r, err := c.response(ctx, req)
	if err != nil || req.Nonce == nil || !validNonce(req.Nonce) || c.signer.Load() == nil {
		return r, err // no nonce, one outside RFC 8954's 1–32 octets, or no key: the cacheable answer
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
	now := c.cfg.Clock.Now()
	key, ok := keyOf(req.SerialNumber, req.HashAlgorithm)
	if !ok {
		return c.unknown(Status{Serial: req.SerialNumber}, req.HashAlgorithm, now)
	}
	half := int64(c.cfg.Validity / 2 / time.Second)
	if a, ok := c.answers.get(key); ok && now.Unix() < a.next()-half {
		return a.response("memory"), nil
	}
	since := c.answers.begin()
	serial := pki.NewSerial(req.SerialNumber)
	name, ok := hashName(req.HashAlgorithm)
	if !ok {
		name = "none" // no stored responses for this hash: the status alone
	}
	l, found, err := c.batch.get(ctx, name, serial)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	st := Status{Serial: req.SerialNumber}
	if !found {
		return c.unknown(st, req.HashAlgorithm, now)
	}
	kind := kindGood
	if l.Status == pki.CertRevoked && l.RevokedAt != nil {
		st.Revoked, st.RevokedAt, st.Reason, kind = true, *l.RevokedAt, l.Reason, kindRevoked
	} else {
		st.Good = true
	}
	var a answer
	cache := "store"
	sr := l.Response
	signer := c.signer.Load()
	usable := sr.DER != nil && sr.Status == l.Status && now.Before(sr.NextUpdate)
	switch {
	case usable && (signer == nil || now.Before(sr.NextUpdate.Add(-c.cfg.Validity/2))):
		a = newAnswer(sr.DER, sr.ThisUpdate, sr.NextUpdate, kind)
	case signer == nil:
		if sr.DER == nil {
			return nil, fmt.Errorf("%w: no pre-signed response for %s yet", ErrTryLater, serial)
		}
		if sr.Status != l.Status {
			return nil, fmt.Errorf("%w: the pre-signed response of %s says %s, the certificate is %s", ErrTryLater, serial, sr.Status, l.Status)
		}
		return nil, fmt.Errorf("%w: the pre-signed response of %s expired at %s", ErrTryLater, serial, sr.NextUpdate)
	default:
		this, next := answerTimes(now, c.cfg.Validity)
		der, err := signer.Sign(st, req.HashAlgorithm, this, next)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
		}
		a, cache = newAnswer(der, this, next, kind), "signed"
		if hn, ok := hashName(req.HashAlgorithm); ok && c.cfg.Responses != nil {
			// Best effort: the presigner's sweep covers a failure here.
			_ = c.cfg.Responses.SaveOCSPResponses(ctx, []pki.OCSPResponse{{Serial: serial, Hash: hn, Status: l.Status,
				DER: der, ThisUpdate: this, NextUpdate: next}})
		}
	}
	c.answers.put(key, a, since)
	return a.response(cache), nil
}

// unknown signs an "unknown" answer for a serial this CA never issued,
// within its budget, and keeps nothing: the serial is the asker's choice.
// A keyless source answers unauthorized.
func (c *CacheSource) unknown(st Status, h crypto.Hash, now time.Time) (*Response, error) {
	signer := c.signer.Load()
	if signer == nil {
		return nil, fmt.Errorf("%w: unknown certificate %s", ErrUnauthorized, st.Serial.Text(16))
	}
	if !c.unknowns.Allow() {
		return nil, fmt.Errorf("%w: over the budget for unknown serials", ErrUnauthorized)
	}
	this, next := answerTimes(now, c.cfg.Validity)
	der, err := signer.Sign(st, h, this, next)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	r := &Response{DER: der, ThisUpdate: this, NextUpdate: next, Answer: "unknown", Cache: "signed"}
	r.headers()
	return r, nil
}

// answerTimes are an answer's thisUpdate and nextUpdate when signed at
// now: nextUpdate a validity ahead; thisUpdate a little back (a minute, or
// a quarter of a short validity) for clients whose clocks run behind.
// Answers are renewed once less than half the validity is left.
func answerTimes(now time.Time, validity time.Duration) (this, next time.Time) {
	now = now.Truncate(time.Second)
	return now.Add(-min(time.Minute, validity/4)), now.Add(validity)
}

// Signer returns the current signer (nil for a keyless source).
func (c *CacheSource) Signer() *Signer { return c.signer.Load() }

// Revoked drops every cached response of the serial, so the next request
// reads the new status.
func (c *CacheSource) Revoked(serial pki.Serial) {
	n, ok := new(big.Int).SetString(string(serial), 16)
	if !ok {
		return
	}
	c.answers.revoke(n)
}

// CacheStats describes the answer cache, for metrics.
type CacheStats struct {
	Entries                int
	Bytes, CapacityBytes   uint64
	StoreReads, StoreBatch uint64
}

// Stats returns the cache's current figures.
func (c *CacheSource) Stats() CacheStats {
	return CacheStats{Entries: c.answers.size(), Bytes: c.answers.weight(), CapacityBytes: c.answers.capacity(),
		StoreReads: c.batch.reads.Load(), StoreBatch: c.batch.batches.Load()}
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
