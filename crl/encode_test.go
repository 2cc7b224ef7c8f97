package crl_test

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"iter"
	"math/big"
	"slices"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/pki"
)

// fakeStore is a logic-only crl.Store holding the entries to encode.
type fakeStore struct {
	crl.Store
	entries []pki.RevokedCert
	saved   pki.CRL
	n       int64
}

func (f *fakeStore) RevokedCerts(context.Context, string, time.Time, time.Time) iter.Seq2[pki.RevokedCert, error] {
	return func(yield func(pki.RevokedCert, error) bool) {
		for _, e := range f.entries {
			if !yield(e, nil) {
				return
			}
		}
	}
}
func (f *fakeStore) NextCRLNumber(context.Context, string) (int64, error) { f.n++; return f.n, nil }
func (f *fakeStore) SaveCRL(_ context.Context, c pki.CRL) (bool, error) {
	f.saved = c
	return true, nil
}

// The hand-written encoder must produce what x509 parses and verifies, for
// every key algorithm the CA supports, with and without reason codes.
func TestEncoderForEveryKeyAlgorithm(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, alg := range []ca.KeyAlgorithm{ca.ECDSAP256, ca.ECDSAP384, ca.RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			h, err := ca.Init(context.Background(), ca.InitOptions{DataDir: t.TempDir(), Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			st := &fakeStore{entries: []pki.RevokedCert{
				{Serial: "1", RevokedAt: at, Reason: pki.ReasonKeyCompromise},
				{Serial: "ff00112233445566778899aabbccddee", RevokedAt: at, Reason: pki.ReasonUnspecified},
			}}
			u, err := crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: "http://x/crl"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := u.RunOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got, err := x509.ParseRevocationList(c.DER)
			if err != nil {
				t.Fatal(err)
			}
			zlintCRL(t, c.DER)
			if err := got.CheckSignatureFrom(h.Intermediate()); err != nil {
				t.Fatalf("signature: %v", err)
			}
			want, _ := new(big.Int).SetString("ff00112233445566778899aabbccddee", 16)
			e := got.RevokedCertificateEntries
			if got.Number.Int64() != 1 || len(e) != 2 || e[0].SerialNumber.Int64() != 1 || e[0].ReasonCode != 1 ||
				e[1].SerialNumber.Cmp(want) != 0 || e[1].ReasonCode != 0 || !e[0].RevocationTime.Equal(at) ||
				string(got.AuthorityKeyId) != string(h.Intermediate().SubjectKeyId) || got.Issuer.String() != h.Intermediate().Subject.String() {
				t.Fatalf("parsed CRL: number %v, entries %+v", got.Number, e)
			}
		})
	}
}

// zlintCRL fails on any zlint CRL finding of notice level or worse (zlint
// v3.7 lints CRLs against RFC 5280 and the CABF BRs).
func zlintCRL(t *testing.T, der []byte, accepted ...string) {
	t.Helper()
	zc, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the CRL: %v", err)
	}
	res := zlint.LintRevocationList(zc)
	ran := 0
	for name, r := range res.Results {
		if r.Status == lint.NA || r.Status == lint.NE {
			continue
		}
		ran++
		if r.Status >= lint.Notice && !slices.Contains(accepted, name) {
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}
	if ran == 0 {
		t.Fatal("no zlint CRL lint applied: the check would prove nothing")
	}
	t.Logf("%d zlint CRL lints applied, none found anything", ran)
}

// A delta CRL carries the critical Delta CRL Indicator naming its base, takes
// its number from the same sequence, lints clean, and verifies.
func TestDeltaCRL(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	h, err := ca.Init(context.Background(), ca.InitOptions{DataDir: t.TempDir(), Algorithm: ca.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	st := &fakeStore{entries: []pki.RevokedCert{{Serial: "2a", RevokedAt: at, Reason: pki.ReasonKeyCompromise}}}
	u, err := crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: "http://x/crl"})
	if err != nil {
		t.Fatal(err)
	}
	full, err := u.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d, err := u.LatestDelta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Number != full.Number+1 || d.IssuerKeyID != hex.EncodeToString(h.Intermediate().SubjectKeyId)+":delta" {
		t.Fatalf("delta number %d key %q, complete CRL number %d", d.Number, d.IssuerKeyID, full.Number)
	}
	got, err := x509.ParseRevocationList(d.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.CheckSignatureFrom(h.Intermediate()); err != nil {
		t.Fatal(err)
	}
	var base int64 = -1
	for _, e := range got.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 27}) {
			if !e.Critical {
				t.Error("the Delta CRL Indicator must be critical")
			}
			if _, err := asn1.Unmarshal(e.Value, &base); err != nil {
				t.Fatal(err)
			}
		}
	}
	if base != full.Number || len(got.RevokedCertificateEntries) != 1 {
		t.Fatalf("delta base %d (want %d), %d entries", base, full.Number, len(got.RevokedCertificateEntries))
	}
	// The CABF BRs discourage deltas for the WebPKI; RFC 5280 defines them
	// and private fleets' relying parties use them.
	zlintCRL(t, d.DER, "e_crl_extensions_validity")
}

// The root's CRL covers CA certificates: its IDP says so and names no
// distribution point (the intermediate has no CRL Distribution Point).
func TestRootCRL(t *testing.T) {
	dir := t.TempDir()
	h, err := ca.Init(context.Background(), ca.InitOptions{DataDir: dir, Algorithm: ca.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := h.RootSigner(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := crl.New(crl.Config{Issuer: h.Root(), Signer: signer, Store: &fakeStore{}, CACerts: true, NoDelta: true,
		Validity: 7 * 24 * time.Hour, Period: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, err := u.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.CheckSignatureFrom(h.Root()); err != nil {
		t.Fatal(err)
	}
	if _, err := u.LatestDelta(context.Background()); err == nil {
		t.Error("NoDelta made a delta CRL")
	}
	zlintCRL(t, c.DER)
	if _, err := h.RootSigner(context.Background(), t.TempDir(), nil); !errors.Is(err, pki.NotFound) {
		t.Errorf("RootSigner without a root key: %v, want pki.NotFound", err)
	}
}
