package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/api"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/web"
)

// uiDeps is what the admin UI needs from the rest of serve.
type uiDeps struct {
	// publicBase is this process's plain-HTTP listener, where the UI asks
	// the real OCSP endpoint.
	publicBase string
	health     func(context.Context) (web.Health, error)
	// events feeds the API's revocation event stream; eventsDone ends the
	// streams at shutdown.
	events     func(int) (<-chan pki.RevocationEvent, func())
	eventsDone <-chan struct{}
}

// serverCertValidity is the life of the HTTPS certificate the CA issues
// itself; it is renewed at two thirds of it, and at every start.
const serverCertValidity = 30 * 24 * time.Hour

// selfCert holds the HTTPS listener's self-issued certificate and renews it.
type selfCert struct {
	ca    *ca.CA
	names []string
	log   *slog.Logger

	mu   sync.RWMutex
	cert *tls.Certificate
}

func (s *selfCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cert, nil
}

func (s *selfCert) renew(ctx context.Context) error {
	c, err := s.ca.IssueServerCertificate(ctx, s.names, serverCertValidity)
	if err != nil {
		return fmt.Errorf("HTTPS certificate: %w", err)
	}
	s.mu.Lock()
	s.cert = c
	s.mu.Unlock()
	s.log.InfoContext(ctx, "HTTPS certificate issued", "names", s.names, "not_after", c.Leaf.NotAfter)
	return nil
}

// run renews the certificate at two thirds of its life until ctx ends; a
// failed renewal is retried every minute while the old one still serves.
func (s *selfCert) run(ctx context.Context) error {
	for {
		s.mu.RLock()
		leaf := s.cert.Leaf
		s.mu.RUnlock()
		wait := time.Until(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(wait, 0)):
		}
		if err := s.renew(ctx); err != nil {
			s.log.ErrorContext(ctx, "HTTPS certificate renewal failed; retrying in a minute", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Minute):
			}
		}
	}
}

// httpsServer builds the HTTPS listener's server: the REST API, TLS 1.2+,
// client certificates requested (they authenticate /renew) but optional.
func httpsServer(ctx context.Context, cfg *config, c *ca.CA, st store.Store, log *slog.Logger, ui uiDeps) (*http.Server, *selfCert, error) {
	accounts := ca.NewAccounts(st, nil)
	directory := ca.NewDirectory(st, nil)
	apiHandler, err := api.New(api.Config{
		Enroller:    ca.NewEnroller(c, accounts, st),
		Revoker:     c,
		Accounts:    accounts,
		Directory:   directory,
		PublicURL:   cfg.PublicURL,
		CAChain:     c.Hierarchy().Chain(),
		EnrollRate:  cfg.enrollRate,
		EnrollBurst: cfg.enrollBurst,
		Events:      ui.events,
		Done:        ui.eventsDone,
		Logger:      log,
	})
	if err != nil {
		return nil, nil, err
	}
	h := c.Hierarchy()
	uiHandler, err := web.New(web.Config{Accounts: accounts, Directory: directory, Revoker: c, Sessions: ca.NewSessions(st, nil),
		OCSP: webOCSP(ui.publicBase, h.Intermediate()), Health: ui.health, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	handler := splitAPI(apiHandler, uiHandler)
	clientCAs := x509.NewCertPool()
	// The issuing CA is an anchor too, so devices that send only their leaf are accepted.
	clientCAs.AddCert(h.Root())
	clientCAs.AddCert(h.Intermediate())
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Client certificates are requested, not verified by TLS: /renew
		// verifies them fully (our signature, stored, not revoked, not
		// expired) and answers a device with an expired or revoked one with
		// a problem it can read, rather than a TLS alert. ClientCAs only
		// tells clients which certificate to send.
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  clientCAs,
		// The listener (package listen) does the handshakes, so HTTP/2 is
		// offered here rather than by ServeTLS.
		NextProtos: []string{"h2", "http/1.1"},
	}
	var self *selfCert
	if cfg.TLSCert != "" {
		kp, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", unwrapPath(err))
		}
		tlsCfg.Certificates = []tls.Certificate{kp}
	} else {
		self = &selfCert{ca: c, names: cfg.tlsNames(), log: log}
		if err := self.renew(ctx); err != nil {
			return nil, nil, err
		}
		tlsCfg.GetCertificate = self.get
	}
	return &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}, self, nil
}

// serveTLS runs srv on ln, a listener that hands out handshaken TLS
// connections, until it is shut down.
func serveTLS(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("https listener: %w", err)
	}
	return nil
}
