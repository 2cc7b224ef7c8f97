package api

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
)

// EST (RFC 7030) for devices and stations that speak it instead of the JSON
// API: the CA certificates, simple enrollment with an enrollment credential
// (HTTP Basic, the secret as the password, or Bearer), and re-enrollment over
// mutual TLS. The device id is the CSR's subject CN, checked against the
// credential's pattern like any enrollment.

const (
	estPrefix = "/.well-known/est"
	// pkcs7MIME is the answer type of /cacerts and /simpleenroll.
	pkcs7MIME = "application/pkcs7-mime; smime-type=certs-only"
)

// estCredential reads the enrollment credential: Basic (any user name,
// the secret as the password, which is what EST clients send) or Bearer.
func estCredential(r *http.Request) (string, bool) {
	if s, ok := bearer(r); ok {
		return s, true
	}
	if _, pw, ok := r.BasicAuth(); ok && pw != "" {
		return pw, true
	}
	return "", false
}

// estCSR reads a base64 DER PKCS#10 body (RFC 7030 §4.2.1).
func estCSR(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/pkcs10") {
		return nil, withCode("unsupported_media_type", pki.Errorf(pki.Invalid, "EST takes application/pkcs10, not %q", truncate(ct, 60)))
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, withCode("body_too_large", pki.Errorf(pki.Invalid, "the request body is over %d bytes", maxBody))
		}
		return nil, pki.Wrap(pki.Invalid, err, "the request body could not be read")
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b)), ""))
	if err != nil || len(der) == 0 {
		return nil, withCode("csr_invalid", pki.Errorf(pki.Invalid, "the body must be a base64-encoded DER PKCS#10 request"))
	}
	return der, nil
}

// writeCertsOnly answers a certs-only PKCS#7, base64-encoded.
func (a *API) writeCertsOnly(w http.ResponseWriter, r *http.Request, certs []*x509.Certificate) {
	var all []byte
	for _, c := range certs {
		all = append(all, c.Raw...)
	}
	p7, err := pkcs7.DegenerateCertificate(all)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	w.Header().Set("Content-Type", pkcs7MIME)
	w.Header().Set("Content-Transfer-Encoding", "base64")
	w.Header().Set("Cache-Control", "no-store")
	enc := base64.StdEncoding.EncodeToString(p7)
	var buf bytes.Buffer
	for len(enc) > 64 { // lines as base64(1) writes them
		buf.WriteString(enc[:64])
		buf.WriteString("\n")
		enc = enc[64:]
	}
	buf.WriteString(enc)
	buf.WriteString("\n")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

func (a *API) estCACerts(w http.ResponseWriter, r *http.Request) {
	if len(a.cfg.CAChain) == 0 {
		a.err.send(w, r, pki.Errorf(pki.Unavailable, "no CA chain is configured"))
		return
	}
	a.writeCertsOnly(w, r, a.cfg.CAChain)
}

func (a *API) estSimpleEnroll(w http.ResponseWriter, r *http.Request) {
	secret, ok := estCredential(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="fleetpki-est"`)
		a.err.send(w, r, withCode("credential_required", pki.Errorf(pki.Unauthenticated, "an enrollment credential is required (HTTP Basic with the secret as the password, or Bearer)")))
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
	der, err := estCSR(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		a.err.send(w, r, withCode("csr_invalid", pki.Wrap(pki.Invalid, err, "the CSR does not parse")))
		return
	}
	iss, err := a.cfg.Enroller.EnrollIdempotent(r.Context(), cred, "", ca.IssueRequest{
		DeviceID: csr.Subject.CommonName, CSR: der, Actor: actor(r, "credential:"+cred.Name),
	})
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	a.writeCertsOnly(w, r, []*x509.Certificate{iss.Certificate})
}

func (a *API) estSimpleReenroll(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		a.err.send(w, r, withCode("client_certificate_required", pki.Errorf(pki.Unauthenticated, "re-enrollment needs the device's current certificate as a TLS client certificate")))
		return
	}
	cert := r.TLS.PeerCertificates[0]
	if !a.allowRenew(w, r, cert) {
		return
	}
	der, err := estCSR(r)
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	iss, err := a.cfg.Revoker.Renew(r.Context(), cert, der, actor(r, "device:"+deviceName(cert)))
	if err != nil {
		a.err.send(w, r, err)
		return
	}
	a.writeCertsOnly(w, r, []*x509.Certificate{iss.Certificate})
}
