package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"

	"github.com/fleetpki/fleetpki/pki"
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): clients need
// not check the responder certificate's own revocation status.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// ActionOCSPResponderIssue is the audit action of a delegated OCSP responder certificate.
const ActionOCSPResponderIssue = "ocsp_responder.issue"

// IssueOCSPResponderCert issues a delegated OCSP responder certificate for
// pub: EKU OCSPSigning, id-pkix-ocsp-nocheck, short-lived (validity), so
// that the issuing CA's key signs only certificates and CRLs.
func (c *CA) IssueOCSPResponderCert(ctx context.Context, pub crypto.PublicKey, validity time.Duration) (*x509.Certificate, error) {
	now := c.clock.Now().UTC()
	tmpl := &x509.Certificate{
		Subject:         pkix.Name{CommonName: c.h.Intermediate().Subject.CommonName + " OCSP Responder"},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		ExtraExtensions: []pkix.Extension{{Id: oidOCSPNoCheck, Value: asn1.NullBytes}},
		PublicKey:       pub,
		SerialNumber:    newSerial(),
	}
	var err error
	if tmpl.NotBefore, tmpl.NotAfter, err = c.validity(now, validity); err != nil {
		return nil, err
	}
	resp, err := c.cas.CreateCertificate(&apiv1.CreateCertificateRequest{Template: tmpl, Lifetime: tmpl.NotAfter.Sub(tmpl.NotBefore), Backdate: backdate})
	if err != nil {
		return nil, pki.Wrap(pki.Unavailable, err, "the OCSP responder certificate could not be signed")
	}
	cert := resp.Certificate
	ev := pki.AuditEvent{Time: now, Actor: pki.Actor{Name: "fleetpki"}, Action: ActionOCSPResponderIssue,
		Target: string(pki.NewSerial(cert.SerialNumber)), Details: map[string]string{"not_after": cert.NotAfter.UTC().Format(time.RFC3339)}}
	if err := c.store.AppendAudit(ctx, ev); err != nil {
		return nil, fmt.Errorf("OCSP responder certificate: audit: %w", err)
	}
	return cert, nil
}
