package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"strings"

	"github.com/fleetpki/fleetpki/api/wire"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
)

func (a *API) certificateResponse(iss *ca.Issued) wire.Issued {
	var chain bytes.Buffer
	for _, c := range iss.Chain {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return wire.Issued{
		DeviceID:    iss.Record.DeviceID,
		Serial:      string(iss.Record.Serial),
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.Certificate.Raw})),
		Chain:       chain.String(),
		NotBefore:   rfc3339(iss.Record.NotBefore),
		NotAfter:    rfc3339(iss.Record.NotAfter),
		OCSPURL:     a.cfg.PublicURL + "/ocsp",
		CRLURL:      a.cfg.PublicURL + "/crl",
	}
}

// enroll issues a device certificate to a factory line's enrollment credential.
func (a *API) enroll(w http.ResponseWriter, r *http.Request) {
	secret, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fleetpki-enroll"`)
		a.err.send(w, r, withCode("credential_required", pki.Errorf(pki.Unauthenticated, "an enrollment credential is required (Authorization: Bearer …)")))
		return
	}
	cred, err := a.cfg.Credentials.AuthenticateCredential(r.Context(), secret)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	if ok, wait := a.limits.allow(cred.ID); !ok {
		w.Header().Set("Retry-After", retryAfterSeconds(wait))
		writeProblem(w, r, Problem{Status: http.StatusTooManyRequests, Code: "rate_limited", Title: "Too many requests",
			Detail: "this enrollment credential is over its rate limit; retry after " + retryAfterSeconds(wait) + " s"})
		return
	}
	var req wire.EnrollRequest
	if err := decode(r, &req); err != nil {
		a.err.send(w, r, err)
		return
	}
	if req.CSR == "" {
		a.err.send(w, r, withCode("csr_missing", pki.Errorf(pki.Invalid, "csr is required (a PEM PKCS#10 request)")))
		return
	}
	for _, ip := range req.IPAddresses {
		if net.ParseIP(ip) == nil {
			a.err.send(w, r, withCode("bad_ip_address", pki.Errorf(pki.Invalid, "ip_addresses: %q is not an IP address", truncate(ip, 64))))
			return
		}
	}
	for _, n := range req.DNSNames {
		if net.ParseIP(n) != nil {
			a.err.send(w, r, withCode("bad_dns_name", pki.Errorf(pki.Invalid, "dns_names: %q is an IP address; give it in ip_addresses", n)))
			return
		}
	}
	act := actor(r, "credential:"+cred.Name)
	iss, err := a.cfg.Enroller.EnrollIdempotent(r.Context(), cred, r.Header.Get("Idempotency-Key"), ca.IssueRequest{
		DeviceID: req.DeviceID, CSR: []byte(req.CSR), Profile: req.Profile, Metadata: req.Metadata, Actor: act,
		Names: append(append([]string(nil), req.DNSNames...), req.IPAddresses...),
	})
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/certificates/"+string(iss.Record.Serial))
	if iss.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeCompactJSON(w, http.StatusCreated, a.certificateResponse(iss))
}

// renew issues a new certificate to a device that presents its current one
// over mutual TLS; the device id comes from that certificate, never the body.
func (a *API) renew(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		a.err.send(w, r, withCode("client_certificate_required", pki.Errorf(pki.Unauthenticated, "renewal needs the device's current certificate as a TLS client certificate")))
		return
	}
	cert := r.TLS.PeerCertificates[0]
	if !a.allowRenew(w, r, cert) {
		return
	}
	var req wire.RenewRequest
	if err := decode(r, &req); err != nil {
		a.err.send(w, r, err)
		return
	}
	iss, err := a.cfg.Revoker.Renew(r.Context(), cert, []byte(req.CSR), actor(r, "device:"+deviceName(cert)))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	writeCompactJSON(w, http.StatusCreated, a.certificateResponse(iss))
}

// allowRenew takes a token of the client certificate's renewal bucket, or
// answers 429. The bucket is keyed by the certificate's fingerprint: the
// TLS handshake proved possession of its key, so nobody can spend another
// device's budget, while the certificate itself is verified later (Renew).
func (a *API) allowRenew(w http.ResponseWriter, r *http.Request, cert *x509.Certificate) bool {
	sum := sha256.Sum256(cert.Raw)
	ok, wait := a.renews.allow(string(sum[:]))
	if ok {
		return true
	}
	w.Header().Set("Retry-After", retryAfterSeconds(wait))
	writeProblem(w, r, Problem{Status: http.StatusTooManyRequests, Code: "rate_limited", Title: "Too many requests",
		Detail: "this certificate has renewed too often; retry after " + retryAfterSeconds(wait) + " s"})
	return false
}

// deviceName names a client certificate's device or service for the audit
// log: its device URI, else its CN.
func deviceName(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if id, ok := strings.CutPrefix(u.String(), "urn:fleetpki:device:"); ok {
			return id
		}
	}
	return c.Subject.CommonName
}
