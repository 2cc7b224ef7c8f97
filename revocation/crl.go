package revocation

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"time"
)

// FetchCRL fetches a CRL (DER or PEM) from url and returns it once
// VerifyCRL accepts it, with its DER.
func FetchCRL(ctx context.Context, client *http.Client, url string, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("CRL %s: %w", url, err)
	}
	body, err := get(client, req, maxCRL)
	if err != nil {
		return nil, nil, fmt.Errorf("CRL %s: %w", url, err)
	}
	if blk, _ := pem.Decode(body); blk != nil {
		body = blk.Bytes
	}
	list, err := VerifyCRL(body, issuer, now)
	if err != nil {
		return nil, nil, fmt.Errorf("CRL %s: %w", url, err)
	}
	return list, body, nil
}

// VerifyCRL parses a DER CRL and refuses one not signed by issuer or past
// its nextUpdate: nobody may be handed a CRL they should reject, or a
// forged one.
func VerifyCRL(der []byte, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, error) {
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	if err := list.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("CRL is not signed by %s: %w", issuer.Subject, err)
	}
	if !now.Before(list.NextUpdate) {
		return nil, fmt.Errorf("CRL expired at %s", list.NextUpdate)
	}
	return list, nil
}
