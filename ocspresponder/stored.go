package ocspresponder

import (
	"errors"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// StoredConfig configures a keyless source.
type StoredConfig struct {
	Lookups Lookups
	// Validity is the pre-signed responses' validity; an entry is read again
	// from the store after half of it, when the presigner has replaced it.
	Validity time.Duration
	// CacheBytes bounds the cached answers (default DefaultCacheBytes).
	CacheBytes uint64
	Clock      pki.Clock
}

// NewStoredSource returns the keyless source of the responder-only mode
// (`fleetpki ocsp`): it answers from the responses the Presigner stored,
// without any signing key. It never answers "good" from a response that
// disagrees with the certificate's stored status (a revocation the
// presigner has not re-signed yet): that is tryLater. A certificate it has
// no response for gets tryLater, one never issued unauthorized (the RFC
// 5019 answer of a responder that cannot sign); a nonce is not echoed.
func NewStoredSource(cfg StoredConfig) (*CacheSource, error) {
	if cfg.Lookups == nil {
		return nil, errors.New("ocsp stored source: Lookups is required")
	}
	return NewCacheSource(CacheConfig{Lookups: cfg.Lookups, Validity: cfg.Validity, CacheBytes: cfg.CacheBytes, Clock: cfg.Clock})
}
