package ocspresponder

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/pki"
)

// Static answers from a fixed set of signed responses about the
// certificates of one issuer: the root's answers about its issuing CAs,
// signed ahead (offline) or daily by serve. A request for any other
// certificate is ErrUnauthorized, one past its response's nextUpdate
// ErrTryLater: a pre-signed answer is never served stale.
type Static struct {
	filter   *filterSource
	clock    pki.Clock
	cur      atomic.Pointer[map[staticKey]*Response]
	expected atomic.Pointer[map[string]bool]
}

// Expect names the certificates Static should answer for: without a
// current answer, a request about one is ErrTryLater (the answers are
// missing or expired), not ErrUnauthorized.
func (s *Static) Expect(certs ...*x509.Certificate) {
	m := map[string]bool{}
	for _, c := range certs {
		m[c.SerialNumber.Text(16)] = true
	}
	s.expected.Store(&m)
}

type staticKey struct {
	hash   crypto.Hash
	serial string
}

// NewStatic returns an empty Static for the certificates issuer signed.
func NewStatic(issuer *x509.Certificate, clock pki.Clock) (*Static, error) {
	if clock == nil {
		clock = pki.SystemClock{}
	}
	s := &Static{clock: clock}
	f, err := NewFilterSource(issuer, sourceFunc(s.lookup))
	if err != nil {
		return nil, err
	}
	s.filter = f.(*filterSource)
	empty := map[staticKey]*Response{}
	s.cur.Store(&empty)
	return s, nil
}

// Set replaces the responses (DER); each must be a successful response
// signed by the issuer (checked), for a SHA-1 or SHA-256 CertID.
func (s *Static) Set(ders [][]byte) error {
	m := make(map[staticKey]*Response, len(ders))
	issuer := s.filter.issuer
	for _, der := range ders {
		r, err := ocsp.ParseResponse(der, issuer)
		if err != nil {
			return fmt.Errorf("pre-signed OCSP response: %w", err)
		}
		answer := map[int]string{ocsp.Good: "good", ocsp.Revoked: "revoked"}[r.Status]
		if answer == "" {
			answer = "unknown"
		}
		resp := &Response{DER: der, ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate, Answer: answer, Cache: "presigned"}
		resp.headers()
		m[staticKey{r.IssuerHash, r.SerialNumber.Text(16)}] = resp
	}
	s.cur.Store(&m)
	return nil
}

// Response implements Source.
func (s *Static) Response(ctx context.Context, req *Request) (*Response, error) {
	return s.filter.Response(ctx, req)
}

func (s *Static) lookup(_ context.Context, req *Request) (*Response, error) {
	serial := req.SerialNumber.Text(16)
	r, ok := (*s.cur.Load())[staticKey{req.HashAlgorithm, serial}]
	if !ok {
		if exp := s.expected.Load(); exp != nil && (*exp)[serial] {
			return nil, fmt.Errorf("%w: no current pre-signed answer for %s", ErrTryLater, serial)
		}
		return nil, fmt.Errorf("%w: no pre-signed answer for %s", ErrUnauthorized, serial)
	}
	if !s.clock.Now().Before(r.NextUpdate) {
		return nil, fmt.Errorf("%w: the pre-signed answer for %s expired at %s", ErrTryLater, req.SerialNumber.Text(16), r.NextUpdate)
	}
	return r, nil
}

// sourceFunc adapts a function to Source.
type sourceFunc func(ctx context.Context, req *Request) (*Response, error)

func (f sourceFunc) Response(ctx context.Context, req *Request) (*Response, error) {
	return f(ctx, req)
}

// Chain asks each source in turn and takes the first answer that is not
// ErrUnauthorized: the issuing CA's responder, then the root's answers.
func Chain(sources ...Source) Source {
	return sourceFunc(func(ctx context.Context, req *Request) (*Response, error) {
		err := ErrUnauthorized
		for _, s := range sources {
			var r *Response
			if r, err = s.Response(ctx, req); !errors.Is(err, ErrUnauthorized) {
				return r, err
			}
		}
		return nil, err
	})
}
