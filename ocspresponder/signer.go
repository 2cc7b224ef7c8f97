package ocspresponder

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/pki"
)

// Signer signs OCSP responses with a delegated responder certificate (EKU
// OCSPSigning, id-pkix-ocsp-nocheck) issued by the issuing CA, which the
// responses carry so clients can check it.
type Signer struct {
	Issuer    *x509.Certificate
	Responder *x509.Certificate
	Key       crypto.Signer
}

// Validate checks that the responder certificate may sign for the issuer.
func (s *Signer) Validate(now time.Time) error {
	switch {
	case s == nil || s.Issuer == nil || s.Responder == nil || s.Key == nil:
		return errors.New("ocsp signer: issuer, responder certificate and key are required")
	case s.Responder.CheckSignatureFrom(s.Issuer) != nil:
		return errors.New("ocsp signer: the responder certificate is not issued by the issuing CA")
	case now.Before(s.Responder.NotBefore) || !now.Before(s.Responder.NotAfter):
		return fmt.Errorf("ocsp signer: the responder certificate is not valid now (until %s)", s.Responder.NotAfter)
	}
	for _, u := range s.Responder.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return nil
		}
	}
	return errors.New("ocsp signer: the responder certificate lacks EKU OCSPSigning")
}

// Status is what a response says about one certificate.
type Status struct {
	Serial    *big.Int
	Good      bool
	Revoked   bool
	RevokedAt time.Time
	Reason    pki.RevocationReason
}

// Sign makes a response valid from thisUpdate to nextUpdate. hash is the
// request's CertID hash, which the response's CertID must use.
func (s *Signer) Sign(st Status, hash crypto.Hash, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	tmpl := ocsp.Response{
		SerialNumber: st.Serial,
		ThisUpdate:   thisUpdate,
		NextUpdate:   nextUpdate,
		Certificate:  s.Responder,
		IssuerHash:   hash,
	}
	switch {
	case st.Revoked:
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, st.RevokedAt, int(st.Reason)
	case st.Good:
		tmpl.Status = ocsp.Good
	default:
		tmpl.Status = ocsp.Unknown
	}
	der, err := ocsp.CreateResponse(s.Issuer, s.Responder, tmpl, s.Key)
	if err != nil {
		return nil, fmt.Errorf("sign OCSP response for %x: %w", st.Serial, err)
	}
	return der, nil
}
