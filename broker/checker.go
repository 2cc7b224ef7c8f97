package broker

import (
	"context"
	"crypto/x509"
)

// RevocationChecker tells whether a client certificate has been revoked. It
// is the broker's only view of certificate status: in process when bundled
// with the CA, over OCSP (or a CRL) when standalone.
//
// Revoked returns an error when the status cannot be established (no fresh
// answer, a bad signature, an "unknown" answer); the broker then refuses the
// client, so an implementation must not turn doubt into (false, nil).
type RevocationChecker interface {
	Revoked(ctx context.Context, leaf, issuer *x509.Certificate) (bool, error)
}
