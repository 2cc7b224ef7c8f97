package ocspresponder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// StoredConfig configures a StoredSource.
type StoredConfig struct {
	Responses ResponseStore
	Status    StatusReader
	// Validity is the pre-signed responses' validity; an entry is read again
	// from the store after half of it, when the presigner has replaced it.
	Validity time.Duration
	Clock    pki.Clock
}

// StoredSource answers from the responses the Presigner stored, without any
// signing key: the responder-only mode (`fleetpki ocsp`). It never answers
// "good" from a response that disagrees with the certificate's stored
// status (a revocation the presigner has not re-signed yet): that is
// tryLater. A certificate it has no response for gets unauthorized, the
// RFC 5019 answer of a responder that cannot sign; a nonce is not echoed.
type StoredSource struct {
	cfg StoredConfig

	mu      sync.RWMutex
	entries map[cacheKey]*Response
}

// NewStoredSource checks cfg.
func NewStoredSource(cfg StoredConfig) (*StoredSource, error) {
	if cfg.Responses == nil || cfg.Status == nil {
		return nil, errors.New("ocsp stored source: Responses and Status are required")
	}
	if cfg.Validity <= 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	return &StoredSource{cfg: cfg, entries: map[cacheKey]*Response{}}, nil
}

// Response returns the stored response for the request's certificate.
func (s *StoredSource) Response(ctx context.Context, req *Request) (*Response, error) {
	serial := pki.NewSerial(req.SerialNumber)
	key := cacheKey{serial, req.HashAlgorithm}
	now := s.cfg.Clock.Now()
	s.mu.RLock()
	r := s.entries[key]
	s.mu.RUnlock()
	if r != nil && now.Before(r.ThisUpdate.Add(s.cfg.Validity/2)) && now.Before(r.NextUpdate) {
		return r, nil
	}
	name, ok := hashName(req.HashAlgorithm)
	if !ok {
		return nil, fmt.Errorf("%w: no pre-signed responses for CertID hash %v", ErrUnauthorized, req.HashAlgorithm)
	}
	rec, err := s.cfg.Status.GetCertificate(ctx, serial)
	if errors.Is(err, pki.NotFound) {
		return nil, fmt.Errorf("%w: unknown certificate %s", ErrUnauthorized, serial)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	sr, err := s.cfg.Responses.GetOCSPResponse(ctx, serial, name)
	if errors.Is(err, pki.NotFound) {
		return nil, fmt.Errorf("%w: no pre-signed response for %s yet", ErrTryLater, serial)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTryLater, err)
	}
	if sr.Status != rec.Status {
		return nil, fmt.Errorf("%w: the pre-signed response of %s says %s, the certificate is %s", ErrTryLater, serial, sr.Status, rec.Status)
	}
	if !now.Before(sr.NextUpdate) {
		return nil, fmt.Errorf("%w: the pre-signed response of %s expired at %s", ErrTryLater, serial, sr.NextUpdate)
	}
	answer := "good"
	if sr.Status == pki.CertRevoked {
		answer = "revoked"
	}
	r = &Response{DER: sr.DER, ThisUpdate: sr.ThisUpdate, NextUpdate: sr.NextUpdate, Answer: answer, Cache: "store"}
	r.headers()
	m := *r
	m.Cache = "memory"
	s.mu.Lock()
	if len(s.entries) >= maxEntries {
		s.entries = map[cacheKey]*Response{}
	}
	s.entries[key] = &m
	s.mu.Unlock()
	return r, nil
}

// Revoked drops the serial's cached responses (a revocation event from
// another process), so the next request reads the store again.
func (s *StoredSource) Revoked(serial pki.Serial) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range presignHashes {
		delete(s.entries, cacheKey{serial, h})
	}
}
