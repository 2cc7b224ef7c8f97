// Package client is the Go client of fleetpki's enrollment API, for factory
// stations. It trusts the server by the SHA-256 fingerprint of the CA's root
// (printed by `fleetpki serve`), retries what is safe to retry under one
// Idempotency-Key, and turns problem+json answers into *Problem errors.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/api/wire"
)

// ErrUntrusted: the server is not the one the pinned root vouches for.
// It is final: retrying would only knock on the same wrong door.
var ErrUntrusted = errors.New("client: untrusted server")

// Problem is an RFC 9457 error answer of the server.
type Problem = wire.Problem

// EnrollRequest is the body of an enrollment.
type EnrollRequest = wire.EnrollRequest

// EnrollResponse is a successful enrollment.
type EnrollResponse struct {
	wire.Issued
	// Replayed is set when an earlier request with the same key issued it.
	Replayed bool
}

// Client talks to one fleetpki server.
type Client struct {
	base     string
	http     *http.Client
	attempts int
	maxWait  time.Duration

	mu   sync.Mutex
	root *x509.Certificate
}

// Option adjusts a Client.
type Option func(*Client)

// WithAttempts sets how many times a retryable failure is tried (default 6).
func WithAttempts(n int) Option { return func(c *Client) { c.attempts = max(1, n) } }

// New returns a client of the server at baseURL (https://host:port) that
// accepts the server only if its chain leads to the root whose SHA-256
// fingerprint (hex, colons allowed) is rootFingerprint. The root must be
// on the wire, as fleetpki's own HTTPS certificate puts it.
func New(baseURL, rootFingerprint string, opts ...Option) (*Client, error) {
	fp, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(rootFingerprint)), ":", ""))
	if err != nil || len(fp) != sha256.Size {
		return nil, errors.New("client: the root fingerprint must be 64 hexadecimal digits (SHA-256)")
	}
	if !strings.HasPrefix(baseURL, "https://") {
		return nil, errors.New("client: the server URL must start with https://")
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), attempts: 6, maxWait: 30 * time.Second}
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification happens in VerifyConnection, against the pinned root
		// instead of the system's; it is complete (chain and host name).
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return c.verify(cs, fp) },
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
	}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// verify accepts the connection when a certificate the server sent has the
// pinned fingerprint, is a self-signed CA, and the server's certificate
// verifies up to it for the host name dialled.
func (c *Client) verify(cs tls.ConnectionState, fp []byte) error {
	var root *x509.Certificate
	for _, cert := range cs.PeerCertificates {
		sum := sha256.Sum256(cert.Raw)
		if bytes.Equal(sum[:], fp) {
			root = cert
		}
	}
	if root == nil || !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return fmt.Errorf("%w: the server did not present the CA root with the pinned fingerprint", ErrUntrusted)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, cert := range cs.PeerCertificates[1:] {
		inter.AddCert(cert)
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: cs.ServerName}); err != nil {
		return fmt.Errorf("%w: the server certificate does not verify against the pinned root: %w", ErrUntrusted, err)
	}
	c.mu.Lock()
	c.root = root
	c.mu.Unlock()
	return nil
}

// Root returns the pinned root once a connection has verified it.
func (c *Client) Root() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.root
}

// NewIdempotencyKey returns a random key for one logical enrollment.
func NewIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Enroll enrolls a device with the credential. Network failures, 429, 503
// and other 5xx answers are retried with backoff under the same
// idempotencyKey (so the server issues once); other answers are final.
func (c *Client) Enroll(ctx context.Context, credential string, req EnrollRequest, idempotencyKey string) (*EnrollResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if idempotencyKey == "" {
		idempotencyKey = NewIdempotencyKey()
	}
	var last error
	for attempt := 1; attempt <= c.attempts; attempt++ {
		out, retry, wait, err := c.enrollOnce(ctx, credential, body, idempotencyKey)
		if err == nil {
			return out, nil
		}
		last = err
		if !retry || attempt == c.attempts {
			break
		}
		if wait == 0 {
			wait = backoff(attempt)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("client: %w (last error: %w)", ctx.Err(), last)
		case <-time.After(min(wait, c.maxWait)):
		}
	}
	return nil, last
}

func (c *Client) enrollOnce(ctx context.Context, credential string, body []byte, key string) (*EnrollResponse, bool, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return nil, false, 0, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		// The request may or may not have reached the server: retrying under
		// the same key is safe either way.
		return nil, ctx.Err() == nil && !errors.Is(err, ErrUntrusted), 0, fmt.Errorf("client: enroll: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, true, 0, fmt.Errorf("client: enroll: %w", err)
	}
	if resp.StatusCode == http.StatusCreated {
		var out EnrollResponse
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, false, 0, fmt.Errorf("client: enroll: bad answer: %w", err)
		}
		out.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
		return &out, false, 0, nil
	}
	p := &Problem{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Detail: strings.TrimSpace(string(b))}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(b, p)
	}
	retry := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
	var wait time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		wait = time.Duration(s) * time.Second
	}
	return nil, retry, wait, p
}

// backoff is exponential from 200 ms with full jitter, capped at 10 s.
func backoff(attempt int) time.Duration {
	ceil := min(10*time.Second, 200*time.Millisecond<<(attempt-1))
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(ceil)))
	return time.Duration(n.Int64()) + 50*time.Millisecond
}

// Renew asks for a new certificate for the identity of current (presented
// as the TLS client certificate, which must be valid and unrevoked) with
// the key of csrPEM. Network failures and 5xx answers are tried again a
// few times; a renewal is not idempotent, but the server bounds how many
// valid certificates one identity may hold.
func (c *Client) Renew(ctx context.Context, current tls.Certificate, csrPEM []byte) (*EnrollResponse, error) {
	body, err := json.Marshal(wire.RenewRequest{CSR: string(csrPEM)})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	tr := c.http.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{current}
	hc := &http.Client{Timeout: c.http.Timeout, Transport: tr}
	defer tr.CloseIdleConnections()
	var last error
	for attempt := 1; attempt <= min(c.attempts, 3); attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/renew", bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		out, retry, err := c.do(hc, req, http.StatusCreated)
		if err == nil {
			return out, nil
		}
		last = err
		if !retry {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("client: %w (last error: %w)", ctx.Err(), last)
		case <-time.After(backoff(attempt)):
		}
	}
	return nil, last
}

// do sends req and reads a certificate answer with status want, or the
// problem; retry says whether trying again may help.
func (c *Client) do(hc *http.Client, req *http.Request, want int) (*EnrollResponse, bool, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, req.Context().Err() == nil && !errors.Is(err, ErrUntrusted), fmt.Errorf("client: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, true, fmt.Errorf("client: %w", err)
	}
	if resp.StatusCode == want {
		var out EnrollResponse
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, false, fmt.Errorf("client: bad answer: %w", err)
		}
		return &out, false, nil
	}
	p := &Problem{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Detail: strings.TrimSpace(string(b))}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(b, p)
	}
	return nil, resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500, p
}
