package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/store"
)

// ocspResponderValidity is the delegated responder certificate's life; it is
// replaced at two thirds of it (and at every start), with a new key.
const ocspResponderValidity = 30 * 24 * time.Hour

// ocspService is the OCSP responder of serve: a caching, signing source
// behind the issuer filter, fed by the CA's revocation events.
type ocspService struct {
	ca      *ca.CA
	cache   *ocspresponder.CacheSource
	presign *ocspresponder.Presigner
	handler http.Handler
	log     *slog.Logger
	until   time.Time // the current responder certificate's NotAfter
	since   time.Time // and its NotBefore
}

func newOCSPService(ctx context.Context, c *ca.CA, st store.Store, reg prometheus.Registerer, log *slog.Logger) (*ocspService, error) {
	s := &ocspService{ca: c, log: log}
	signer, err := s.newSigner(ctx)
	if err != nil {
		return nil, err
	}
	s.cache, err = ocspresponder.NewCacheSource(ocspresponder.CacheConfig{Signer: signer, Status: st, Responses: st})
	if err != nil {
		return nil, err
	}
	s.presign, err = ocspresponder.NewPresigner(ocspresponder.PresignConfig{Store: st, Signer: s.cache.Signer,
		IssuerKeyID: c.Hierarchy().IssuerKeyID(), Logger: log})
	if err != nil {
		return nil, err
	}
	c.OnIssued(s.presign.Issued)
	src, err := ocspresponder.NewFilterSource(c.Hierarchy().Intermediate(), s.cache)
	if err != nil {
		return nil, err
	}
	s.handler = ocspresponder.NewResponder(src, log, reg)
	return s, nil
}

// newSigner makes a responder key (kept in memory only: it is short-lived
// and replaced at every start) and has the CA certify it.
func (s *ocspService) newSigner(ctx context.Context) (*ocspresponder.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("OCSP responder key: %w", err)
	}
	cert, err := s.ca.IssueOCSPResponderCert(ctx, key.Public(), ocspResponderValidity)
	if err != nil {
		return nil, err
	}
	s.since, s.until = cert.NotBefore, cert.NotAfter
	s.log.InfoContext(ctx, "OCSP responder certificate issued", "not_after", cert.NotAfter)
	return &ocspresponder.Signer{Issuer: s.ca.Hierarchy().Intermediate(), Responder: cert, Key: key}, nil
}

// run applies revocation events to the cache and rotates the responder
// certificate at two thirds of its life, until ctx ends.
func (s *ocspService) run(ctx context.Context) error {
	events, cancel := s.ca.Subscribe(1024)
	defer cancel()
	go func() { _ = s.cache.Run(ctx, events) }()
	presignEvents, cancelPresign := s.ca.Subscribe(1024)
	defer cancelPresign()
	go func() { _ = s.presign.Run(ctx, presignEvents) }()
	for {
		wait := time.Until(s.since.Add(s.until.Sub(s.since) * 2 / 3))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(wait, time.Minute)):
		}
		signer, err := s.newSigner(ctx)
		if err == nil {
			err = s.cache.SetSigner(signer)
		}
		if err != nil {
			s.log.ErrorContext(ctx, "OCSP responder rotation failed; retrying in a minute", "err", err)
		}
	}
}
