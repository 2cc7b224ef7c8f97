package ocspresponder

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/renewal"
)

// ResponderValidity is the delegated responder certificate's life; it is
// replaced, with a new key, at two thirds of it and at every start.
const ResponderValidity = 30 * 24 * time.Hour

// ServiceConfig configures the responder of a process that can sign: a
// delegated responder certificate renewed in memory, the caching signer,
// and the presigner that keeps a response stored for every certificate.
type ServiceConfig struct {
	// Issuer is the issuing CA the responder answers for.
	Issuer *x509.Certificate
	// Certify has the issuing CA certify a new responder key (EKU
	// OCSPSigning, id-pkix-ocsp-nocheck) for validity.
	Certify func(ctx context.Context, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error)
	Store   PresignStore
	// CacheBytes bounds the answer cache (default DefaultCacheBytes).
	CacheBytes uint64
	// HTTPMaxAge caps answers' Cache-Control max-age (0: until nextUpdate).
	HTTPMaxAge time.Duration
	// Validity is the answers' life (nextUpdate - thisUpdate), the longest a
	// relying party that caches them (NATS, nginx) may go on trusting a
	// "good" after a revocation; they are re-signed at half of it. Default
	// 24 h.
	Validity time.Duration
	// Also answers what the issuing CA's responder is not authorized for:
	// the root's answers about its issuing CAs (a Static). May be nil.
	Also Source
	// Registerer receives the responder's metrics (may be nil).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Service is a signing OCSP responder and what keeps it fresh.
type Service struct {
	// Handler answers POST /ocsp and GET /ocsp/{request}.
	Handler   http.Handler
	Cache     *CacheSource
	Presigner *Presigner
	responder *renewal.Renewer[*Signer]
}

// NewService makes the first responder certificate and builds the service.
func NewService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	if cfg.Issuer == nil || cfg.Certify == nil || cfg.Store == nil {
		return nil, errors.New("ocsp service: Issuer, Certify and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{}
	var err error
	s.responder, err = renewal.New(ctx, renewal.Config[*Signer]{Name: "ocsp responder", Logger: cfg.Logger,
		Issue: func(ctx context.Context) (*Signer, *x509.Certificate, error) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, nil, fmt.Errorf("OCSP responder key: %w", err)
			}
			cert, err := cfg.Certify(ctx, key.Public(), ResponderValidity)
			if err != nil {
				return nil, nil, err
			}
			return &Signer{Issuer: cfg.Issuer, Responder: cert, Key: key}, cert, nil
		},
		Installed: func(_ context.Context, sg *Signer) error {
			if s.Cache == nil {
				return nil // the first one: the cache is built with it below
			}
			return s.Cache.SetSigner(sg)
		}})
	if err != nil {
		return nil, err
	}
	if s.Cache, err = NewCacheSource(CacheConfig{Signer: s.responder.Current(), Lookups: cfg.Store, Responses: cfg.Store,
		CacheBytes: cfg.CacheBytes, Validity: cfg.Validity}); err != nil {
		return nil, err
	}
	if err := RegisterCache(cfg.Registerer, s.Cache); err != nil {
		return nil, err
	}
	keyID := fmt.Sprintf("%x", cfg.Issuer.SubjectKeyId)
	if s.Presigner, err = NewPresigner(PresignConfig{Store: cfg.Store, Signer: s.Cache.Signer, IssuerKeyID: keyID, Validity: cfg.Validity,
		Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	filtered, err := NewFilterSource(cfg.Issuer, s.Cache)
	if err != nil {
		return nil, err
	}
	if cfg.Also != nil {
		filtered = Chain(filtered, cfg.Also)
	}
	rs := NewResponder(filtered, cfg.Logger, cfg.Registerer)
	rs.SetHTTPMaxAge(cfg.HTTPMaxAge)
	s.Handler = rs
	return s, nil
}

// Run keeps the service fresh until ctx ends: the responder certificate's
// renewal, the cache following revocations (cacheEvents) and the
// presigner (presignEvents: its own feed, it drains at its own pace).
func (s *Service) Run(ctx context.Context, cacheEvents, presignEvents <-chan pki.RevocationEvent) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.responder.Run(gctx) })
	g.Go(func() error { return s.Cache.Run(gctx, cacheEvents) })
	g.Go(func() error { return s.Presigner.Run(gctx, presignEvents) })
	return g.Wait()
}
