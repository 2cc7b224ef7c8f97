package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"

	"github.com/fleetpki/fleetpki/pki"
)

// ActionServerCertIssue is the audit action of a certificate for one of
// fleetpki's own TLS listeners.
const ActionServerCertIssue = "server_certificate.issue"

// IssueServerCertificate issues a TLS server certificate for fleetpki's own
// listeners (the HTTPS API, the MQTT broker) with a fresh P-256 key kept in
// memory only: the certificate is short-lived and re-issued at every start
// and before it expires, so its key never needs to touch the disk. names are
// DNS names or IP addresses; the first is the subject CN.
func (c *CA) IssueServerCertificate(ctx context.Context, names []string, validity time.Duration) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, pki.Errorf(pki.Invalid, "a server certificate needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("server certificate key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		PublicKey:   key.Public(),
		// Revocation information like every leaf of this CA.
		OCSPServer:            []string{c.urls.ocsp},
		IssuingCertificateURL: []string{c.urls.issuer},
		CRLDistributionPoints: []string{c.urls.crl},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	now := c.clock.Now().UTC()
	tmpl.NotBefore, tmpl.NotAfter, err = c.validity(now, validity)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = newSerial()
	resp, err := c.cas.CreateCertificate(&apiv1.CreateCertificateRequest{Template: tmpl, Lifetime: tmpl.NotAfter.Sub(tmpl.NotBefore), Backdate: backdate})
	if err != nil {
		return nil, pki.Wrap(pki.Unavailable, err, "the server certificate could not be signed")
	}
	cert := resp.Certificate
	ev := pki.AuditEvent{Time: now, Actor: pki.Actor{Name: "fleetpki"}, Action: ActionServerCertIssue,
		Target: string(pki.NewSerial(cert.SerialNumber)), Details: map[string]string{"names": strings.Join(names, ","),
			"not_after": cert.NotAfter.UTC().Format(time.RFC3339)}}
	if err := c.store.AppendAudit(ctx, ev); err != nil {
		return nil, fmt.Errorf("server certificate: audit: %w", err)
	}
	chain := [][]byte{cert.Raw}
	// The root too: stations pin it by fingerprint (fleetpki enroll), so
	// it must be on the wire; other clients ignore it.
	for _, ch := range c.h.Chain() {
		chain = append(chain, ch.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert}, nil
}
