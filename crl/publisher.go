package crl

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"time"

	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/pki"
)

// Root CRL timing: the root revokes almost never (it covers the issuing
// CAs), so its CRL is re-signed daily; a week's validity rides out an
// outage like the issuing CA's CRL does.
const (
	rootValidity = 7 * 24 * time.Hour
	rootPeriod   = 24 * time.Hour
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Issuer and Signer are the issuing CA; URL is its CRL's address (the
	// certificates' CRL Distribution Point).
	Issuer *x509.Certificate
	Signer crypto.Signer
	URL    string
	// Root and RootSigner, when RootSigner is set, publish the root's CRL
	// (covering the issuing CAs); a serving machine without the root key
	// (an offline root) leaves RootSigner nil.
	Root       *x509.Certificate
	RootSigner crypto.Signer
	Store      Store
	// Elector, when set, elects one generator per CRL among processes
	// sharing the store; the others serve what it stores.
	Elector func(name string) func(context.Context) (bool, error)
	Logger  *slog.Logger
}

// Publisher publishes the issuing CA's CRLs (complete and delta) and, when
// it holds the root key, the root's CRL.
type Publisher struct {
	Issuing *Updater
	Root    *Updater // nil without the root key
}

// NewPublisher checks cfg, builds the updaters and makes the first CRLs,
// so that a CRL can be served before anything runs.
func NewPublisher(ctx context.Context, cfg PublisherConfig) (*Publisher, error) {
	leader := func(name string) func(context.Context) (bool, error) {
		if cfg.Elector == nil {
			return nil
		}
		return cfg.Elector(name)
	}
	keyID := hex.EncodeToString(cfg.Issuer.SubjectKeyId)
	issuing, err := New(Config{Issuer: cfg.Issuer, Signer: cfg.Signer, Store: cfg.Store, URL: cfg.URL, Logger: cfg.Logger,
		Leader: leader("crl:" + keyID)})
	if err != nil {
		return nil, err
	}
	p := &Publisher{Issuing: issuing}
	if cfg.RootSigner != nil {
		if cfg.Root == nil {
			return nil, errors.New("crl: a root signer without the root certificate")
		}
		// Init's intermediates carry no CRL Distribution Point, so the IDP names none.
		p.Root, err = New(Config{Issuer: cfg.Root, Signer: cfg.RootSigner, Store: cfg.Store, CACerts: true, NoDelta: true,
			Validity: rootValidity, Period: rootPeriod, Logger: cfg.Logger, Leader: leader("crl-root:" + keyID)})
		if err != nil {
			return nil, err
		}
	}
	if err := p.Issuing.Update(ctx); err != nil {
		return nil, err
	}
	if p.Root != nil {
		if err := p.Root.Update(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Ready fails while no valid issuing-CA CRL can be served.
func (p *Publisher) Ready(ctx context.Context) error {
	_, err := p.Issuing.Latest(ctx)
	return err
}

// Run keeps the CRLs fresh until ctx ends; the issuing CA's CRL follows
// the revocations on events.
func (p *Publisher) Run(ctx context.Context, events <-chan pki.RevocationEvent) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Issuing.Run(gctx, events) })
	if p.Root != nil {
		g.Go(func() error { return p.Root.Run(gctx, nil) })
	}
	return g.Wait()
}
