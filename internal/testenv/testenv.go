// Package testenv builds what tests in several packages need: a real CA
// over a real SQLite store in a temporary directory, and devices it issued
// to. Only tests import it (the import rules let it reach the store).
package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// Env is a CA hierarchy (root key included) and a CA on an SQLite store.
type Env struct {
	Dir       string
	Store     *sqlite.Store
	Hierarchy *ca.Hierarchy
	CA        *ca.CA
}

// Options adjust New; the zero value is fine.
type Options struct {
	Clock     pki.Clock // nil: the system clock
	PublicURL string    // default http://127.0.0.1:8080
	// KMS and OfflineRoot are ca.InitOptions': keys in a token, the root
	// key elsewhere.
	KMS         *ca.KMS
	OfflineRoot string
}

// New makes an Env that lives until the test ends.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "fleetpki.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := ca.Init(ctx, ca.InitOptions{DataDir: dir, KMS: opts.KMS, OfflineRoot: opts.OfflineRoot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if opts.PublicURL == "" {
		opts.PublicURL = "http://127.0.0.1:8080"
	}
	c, err := ca.New(ctx, ca.Config{Hierarchy: h, Store: st, Bulk: st, PublicURL: opts.PublicURL, Clock: opts.Clock})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Dir: dir, Store: st, Hierarchy: h, CA: c}
}

// Issue issues a device certificate for a new P-256 key.
func (e *Env) Issue(t testing.TB, deviceID string) (*ca.Issued, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := e.CA.Issue(t.Context(), ca.IssueRequest{DeviceID: deviceID, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	return iss, key
}

// Revoke revokes a certificate with reason keyCompromise.
func (e *Env) Revoke(t testing.TB, c *x509.Certificate) {
	t.Helper()
	if _, err := e.CA.Revoke(t.Context(), pki.NewSerial(c.SerialNumber), pki.ReasonKeyCompromise, pki.Actor{Name: "test"}); err != nil {
		t.Fatal(err)
	}
}
