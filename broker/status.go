package broker

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/fleetpki/fleetpki/pki"
)

// StatusReader reads a certificate's stored state.
type StatusReader interface {
	GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
}

// StoredStatus is the bundled broker's RevocationChecker: the stored
// status, the same the OCSP responder answers from. A certificate the store
// does not hold (or holds with other bytes) is an error, so it is refused.
type StoredStatus struct{ Store StatusReader }

var _ RevocationChecker = StoredStatus{}

// Revoked reports whether the store holds leaf as revoked.
func (c StoredStatus) Revoked(ctx context.Context, leaf, _ *x509.Certificate) (bool, error) {
	rec, err := c.Store.GetCertificate(ctx, pki.NewSerial(leaf.SerialNumber))
	if err != nil {
		return false, fmt.Errorf("certificate status: %w", err)
	}
	if string(rec.DER) != string(leaf.Raw) {
		return false, fmt.Errorf("certificate %s differs from the one issued under that serial", rec.Serial)
	}
	return rec.Status == pki.CertRevoked, nil
}
