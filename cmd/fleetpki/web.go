package main

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
	"github.com/fleetpki/fleetpki/web"
)

// webOCSP asks the public OCSP endpoint (as devices and brokers see it)
// about a certificate, for the admin UI's certificate page.
func webOCSP(publicURL string, issuer *x509.Certificate) func(context.Context, *x509.Certificate) (web.OCSPAnswer, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	url := strings.TrimRight(publicURL, "/") + "/ocsp"
	return func(ctx context.Context, cert *x509.Certificate) (web.OCSPAnswer, error) {
		r, err := revocation.AskOCSP(ctx, client, url, cert, issuer, time.Now())
		if err != nil && !errors.Is(err, revocation.ErrUnknown) {
			return web.OCSPAnswer{}, err
		}
		a := web.OCSPAnswer{Status: "unknown", ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
		switch r.Status {
		case ocsp.Good:
			a.Status = "good"
		case ocsp.Revoked:
			a.Status, a.RevokedAt, a.Reason = "revoked", r.RevokedAt, pki.RevocationReason(r.RevocationReason).String()
		}
		return a, nil
	}
}

// splitAPI sends /api/ and EST's /.well-known/est/ to the REST API and
// everything else to the web UI.
func splitAPI(apiHandler, ui http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/.well-known/est/") {
			apiHandler.ServeHTTP(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	})
}
