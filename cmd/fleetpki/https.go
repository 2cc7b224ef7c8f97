package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/api"
	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/renewal"
	"github.com/fleetpki/fleetpki/web"
)

// adminHandler is the HTTPS listener's handler: /api/ and EST's
// /.well-known/est/ go to the REST API, everything else to the admin UI.
func adminHandler(cfg *config.Config, e *env, users *accounts.Users, streamsDone <-chan struct{}, publicBase string,
	health func(context.Context) (web.Health, error), log *slog.Logger) (http.Handler, error) {
	creds := accounts.NewCredentials(e.st, nil)
	directory := ca.NewDirectory(e.st, nil)
	auditLog := audit.New(e.st, nil)
	apiHandler, err := api.New(api.Config{Enroller: ca.NewEnroller(e.ca, creds, e.st), Revoker: e.ca, Tokens: users, Credentials: creds, Clients: e.ca,
		Directory: directory, Audit: auditLog, PublicURL: cfg.PublicURL, CAChain: e.h.Chain(), EnrollRate: cfg.EnrollPerSecond,
		EnrollBurst: cfg.EnrollBurstN, Events: e.ca.Subscribe, Done: streamsDone, Logger: log})
	if err != nil {
		return nil, err
	}
	uiHandler, err := web.New(web.Config{Users: users, Credentials: creds, Directory: directory, Audit: auditLog, Revoker: e.ca,
		Sessions: accounts.NewSessions(accounts.SessionsConfig{Store: e.st, Users: e.st, Audit: e.st}),
		OCSP:     web.AskOCSP(strings.TrimRight(publicBase, "/")+"/ocsp", e.h.Intermediate()), Health: health, Logger: log})
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/.well-known/est/") {
			apiHandler.ServeHTTP(w, r)
			return
		}
		uiHandler.ServeHTTP(w, r)
	}), nil
}

// httpsTLS is the HTTPS listener's TLS configuration: TLS 1.2+, client
// certificates requested (they authenticate /renew) but optional.
func httpsTLS(h *ca.Hierarchy, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
		// Client certificates are requested, not verified by TLS: /renew
		// verifies them fully (our signature, stored, not revoked, not
		// expired) and answers a device with an expired or revoked one with
		// a problem it can read, rather than a TLS alert. ClientCAs only
		// tells clients which certificate to send; the issuing CA is in it
		// so that devices sending only their leaf are accepted.
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  pki.CertPool(h.Root(), h.Intermediate()),
		// The listener (package listen) does the handshakes, so HTTP/2 is
		// offered here rather than by ServeTLS.
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// serverCert returns the certificate a listener serves: certFile and
// keyFile (--tls-cert, --tls-key) when set, else one the CA issues itself
// for names, renewed by a component that add registers.
func serverCert(ctx context.Context, certFile, keyFile string, c *ca.CA, names []string, name string,
	add func(string, func(context.Context) error), log *slog.Logger) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if certFile != "" {
		return staticCert(certFile, keyFile)
	}
	r, err := renewal.New(ctx, renewal.Config[*tls.Certificate]{Name: name, Logger: log.With("listener", name),
		Issue: func(ctx context.Context) (*tls.Certificate, *x509.Certificate, error) {
			tc, err := c.IssueServerCertificate(ctx, names, serverCertValidity)
			if err != nil {
				return nil, nil, err
			}
			return tc, tc.Leaf, nil
		}})
	if err != nil {
		return nil, err
	}
	add(name+" certificate renewal", r.Run)
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.Current(), nil }, nil
}

// staticCert serves the certificate and key of --tls-cert and --tls-key.
func staticCert(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", config.UnwrapPath(err))
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &kp, nil }, nil
}
