package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Limits of what is read from a responder or CRL distribution point.
const (
	maxOCSPResponse = 64 << 10
	maxCRL          = 64 << 20
	// clockSkew is how far in the future a thisUpdate may be.
	clockSkew = 5 * time.Minute
)

// ErrUnknown is a responder's verified answer that it does not know the
// certificate: not a status one may act on.
var ErrUnknown = errors.New("the responder does not know the certificate")

// AskOCSP queries the OCSP responder at url about leaf (POST, SHA-1 CertID,
// as RFC 5019 clients do) and returns the response once it is verified:
// signed by issuer or a responder it delegated to, about leaf's serial,
// with a thisUpdate not in the future and a nextUpdate not past (now is
// the caller's clock). An "unknown" answer is ErrUnknown.
func AskOCSP(ctx context.Context, client *http.Client, url string, leaf, issuer *x509.Certificate, now time.Time) (*ocsp.Response, error) {
	req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, fmt.Errorf("OCSP request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
	if err != nil {
		return nil, fmt.Errorf("OCSP request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	body, err := get(client, hreq, maxOCSPResponse)
	if err != nil {
		return nil, fmt.Errorf("OCSP %s: %w", url, err)
	}
	resp, err := ParseOCSP(body, leaf, issuer, now)
	if err != nil {
		return nil, fmt.Errorf("OCSP %s: %w", url, err)
	}
	return resp, nil
}

// ParseOCSP verifies a DER OCSP response about leaf as AskOCSP does.
func ParseOCSP(der []byte, leaf, issuer *x509.Certificate, now time.Time) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		return nil, fmt.Errorf("bad response: %w", err)
	}
	switch {
	case resp.SerialNumber == nil || resp.SerialNumber.Cmp(leaf.SerialNumber) != 0:
		return nil, errors.New("the response is about another certificate")
	case resp.ThisUpdate.After(now.Add(clockSkew)):
		return nil, fmt.Errorf("the response's thisUpdate %s is in the future", resp.ThisUpdate)
	case resp.NextUpdate.IsZero() || !now.Before(resp.NextUpdate):
		return nil, fmt.Errorf("the response is stale (nextUpdate %s)", resp.NextUpdate)
	case resp.Status == ocsp.Unknown:
		return resp, ErrUnknown
	}
	return resp, nil
}

// get sends req and returns a 200's body of at most limit bytes.
func get(client *http.Client, req *http.Request, limit int64) ([]byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return b, nil
}
