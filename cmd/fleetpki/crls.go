package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
)

// Root CRL timing: the root revokes almost never (it covers the
// intermediate), so its CRL is re-signed daily; a week's validity rides out
// an outage like the issuing CA's CRL does.
const (
	rootCRLValidity = 7 * 24 * time.Hour
	rootCRLPeriod   = 24 * time.Hour
)

// crlService publishes the issuing CA's CRLs (complete and delta) and, when
// the data directory holds the root key, the root's CRL.
type crlService struct {
	issuing *crl.Updater
	root    *crl.Updater // nil for an imported hierarchy
}

func newCRLService(ctx context.Context, cfg *config, h *ca.Hierarchy, st store.Store, log *slog.Logger) (*crlService, error) {
	base := strings.TrimRight(cfg.PublicURL, "/")
	// Replicas on one Postgres elect one generator per issuer; the others
	// serve what it stores.
	var leader func(string) func(context.Context) (bool, error)
	if pg, ok := st.(*postgres.Store); ok {
		leader = func(name string) func(context.Context) (bool, error) { return pg.Leader(name).IsLeader }
	} else {
		leader = func(string) func(context.Context) (bool, error) { return nil }
	}
	issuing, err := crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: base + "/crl", Logger: log,
		Leader: leader("crl:" + h.IssuerKeyID())})
	if err != nil {
		return nil, err
	}
	s := &crlService{issuing: issuing}
	rootSigner, err := h.RootSigner(ctx, cfg.DataDir, cfg.keyPassword)
	switch {
	case errors.Is(err, pki.NotFound):
		log.InfoContext(ctx, "no root key in the data directory: the root's CRL is published by whoever holds it")
	case err != nil:
		return nil, fmt.Errorf("root CRL: %w", err)
	default:
		s.root, err = crl.New(crl.Config{Issuer: h.Root(), Signer: rootSigner, Store: st,
			// Init's intermediates carry no CRL Distribution Point, so the IDP names none.
			CACerts: true, NoDelta: true, Validity: rootCRLValidity, Period: rootCRLPeriod, Logger: log,
			Leader: leader("crl-root:" + h.IssuerKeyID())})
		if err != nil {
			return nil, err
		}
	}
	if err := s.issuing.Update(ctx); err != nil {
		return nil, err
	}
	if s.root != nil {
		if err := s.root.Update(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ready fails while no valid CRL can be served.
func (s *crlService) ready(ctx context.Context) error {
	_, err := s.issuing.Latest(ctx)
	return err
}

// run keeps the CRLs fresh; the issuing CA's CRL follows revocations.
func (s *crlService) run(ctx context.Context, events <-chan pki.RevocationEvent) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.issuing.Run(gctx, events) })
	if s.root != nil {
		g.Go(func() error { return s.root.Run(gctx, nil) })
	}
	return g.Wait()
}
