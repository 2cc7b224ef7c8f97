package ocspresponder

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time { return c.t }

// presignEnv is a real CA on a real store, with a delegated responder.
type presignEnv struct {
	ca     *ca.CA
	st     *sqlite.Store
	signer *Signer
	clock  *testClock
	p      *Presigner
	te     *testenv.Env
}

func newPresignEnv(t *testing.T) *presignEnv {
	t.Helper()
	ctx := t.Context()
	te := testenv.New(t, testenv.Options{})
	st, h, c := te.Store, te.Hierarchy, te.CA
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := c.IssueOCSPResponderCert(ctx, key.Public(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer := &Signer{Issuer: h.Intermediate(), Responder: cert, Key: key}
	clock := &testClock{time.Now()}
	p, err := NewPresigner(PresignConfig{Store: st, IssuerKeyID: h.IssuerKeyID(), Signer: func() *Signer { return signer }, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return &presignEnv{ca: c, st: st, signer: signer, clock: clock, p: p, te: te}
}

func (e *presignEnv) issue(t *testing.T, id string) *ca.Issued {
	t.Helper()
	iss, _ := e.te.Issue(t, id)
	return iss
}

// storedStatus parses the stored response for hash and returns its status.
func (e *presignEnv) storedStatus(t *testing.T, iss *ca.Issued, hash string) (int, time.Time) {
	t.Helper()
	r, err := e.st.GetOCSPResponse(t.Context(), iss.Record.Serial, hash)
	if err != nil {
		t.Fatalf("stored %s response: %v", hash, err)
	}
	parsed, err := ocsp.ParseResponseForCert(r.DER, iss.Certificate, e.signer.Issuer)
	if err != nil {
		t.Fatalf("stored %s response does not verify: %v", hash, err)
	}
	return parsed.Status, parsed.ThisUpdate
}

func TestPresigner(t *testing.T) {
	e := newPresignEnv(t)
	ctx := t.Context()
	a, b := e.issue(t, "dev-a"), e.issue(t, "dev-b")
	// The sweep signs every certificate without a response, for both hashes.
	if n, err := e.p.SweepOnce(ctx); err != nil || n != 4 {
		t.Fatalf("first sweep: %d responses, %v; want 2 certificates × 2 hashes", n, err)
	}
	for _, h := range []string{"sha1", "sha256"} {
		if st, _ := e.storedStatus(t, a, h); st != ocsp.Good {
			t.Fatalf("%s: status %d, want good", h, st)
		}
	}
	if n, _ := e.p.SweepOnce(ctx); n != 0 {
		t.Fatalf("a second sweep re-signed %d fresh responses", n)
	}
	// A revocation is re-signed at once (the Run loop calls Resign).
	if _, err := e.ca.Revoke(ctx, b.Record.Serial, pki.ReasonKeyCompromise, pki.Actor{Name: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Resign(ctx, b.Record.Serial); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.storedStatus(t, b, "sha1"); st != ocsp.Revoked {
		t.Fatalf("after the revocation: status %d, want revoked", st)
	}
	// Past half their validity, responses are re-signed by the sweep.
	_, before := e.storedStatus(t, a, "sha1")
	e.clock.t = e.clock.t.Add(13 * time.Hour)
	if n, err := e.p.SweepOnce(ctx); err != nil || n != 4 {
		t.Fatalf("sweep after half-life: %d, %v", n, err)
	}
	if _, after := e.storedStatus(t, a, "sha1"); !after.After(before) {
		t.Fatalf("thisUpdate %v not after %v", after, before)
	}
}

// Run signs a newly issued certificate's responses without waiting for a sweep.
func TestPresignerSignsAtIssuance(t *testing.T) {
	e := newPresignEnv(t)
	e.ca.OnIssued(e.p.Issued)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, stop := e.ca.Subscribe(16)
	defer stop()
	go func() { _ = e.p.Run(ctx, events) }()
	time.Sleep(50 * time.Millisecond) // the start-up sweep
	iss := e.issue(t, "dev-new")
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := e.st.GetOCSPResponse(ctx, iss.Record.Serial, "sha1"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pre-signed response 2 s after issuance")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// SHA-256 follows in a sweep, off the enrollment's path.
	if n, err := e.p.SweepOnce(ctx); err != nil || n != 1 {
		t.Fatalf("sweep after issuance: %d, %v; want the SHA-256 response", n, err)
	}
	if _, err := e.ca.Revoke(ctx, iss.Record.Serial, pki.ReasonSuperseded, pki.Actor{Name: "t"}); err != nil {
		t.Fatal(err)
	}
	for {
		st1, _ := e.storedStatus(t, iss, "sha1")
		st256, _ := e.storedStatus(t, iss, "sha256")
		if st1 == ocsp.Revoked && st256 == ocsp.Revoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation was not re-signed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The responder-only source answers from stored responses, and never good
// when the stored response disagrees with the certificate's status.
func TestStoredSource(t *testing.T) {
	e := newPresignEnv(t)
	ctx := t.Context()
	a := e.issue(t, "dev-a")
	src, err := NewStoredSource(StoredConfig{Lookups: e.st, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Request: &ocsp.Request{HashAlgorithm: crypto.SHA1, SerialNumber: a.Certificate.SerialNumber}}
	if _, err := src.Response(ctx, req); !errors.Is(err, ErrTryLater) {
		t.Fatalf("before pre-signing: %v, want tryLater", err)
	}
	if _, err := e.p.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := src.Response(ctx, req)
	if err != nil || r.Answer != "good" {
		t.Fatalf("after pre-signing: %+v, %v", r, err)
	}
	// Revoked in the store but not yet re-signed: tryLater, not good.
	if _, err := e.ca.Revoke(ctx, a.Record.Serial, pki.ReasonKeyCompromise, pki.Actor{Name: "t"}); err != nil {
		t.Fatal(err)
	}
	src.Revoked(a.Record.Serial)
	if _, err := src.Response(ctx, req); !errors.Is(err, ErrTryLater) {
		t.Fatalf("revoked, response not re-signed: %v, want tryLater", err)
	}
	if err := e.p.Resign(ctx, a.Record.Serial); err != nil {
		t.Fatal(err)
	}
	if r, err := src.Response(ctx, req); err != nil || r.Answer != "revoked" {
		t.Fatalf("after re-signing: %+v, %v", r, err)
	}
	unknown := &Request{Request: &ocsp.Request{HashAlgorithm: crypto.SHA1, SerialNumber: new(big.Int).Lsh(a.Certificate.SerialNumber, 1)}}
	if _, err := src.Response(ctx, unknown); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("unknown serial: %v, want unauthorized", err)
	}
	// A stored response past its nextUpdate is never served.
	e.clock.t = e.clock.t.Add(25 * time.Hour)
	src.Revoked(a.Record.Serial)
	if _, err := src.Response(ctx, &Request{Request: &ocsp.Request{HashAlgorithm: crypto.SHA1, SerialNumber: a.Record.Serial.BigInt()}}); !errors.Is(err, ErrTryLater) {
		t.Fatalf("expired stored response: %v, want tryLater", err)
	}
}

// Nonce answers cost a signature each; past the budget, a nonce request gets
// the cached answer without its nonce instead of more signing.
func TestNonceBudget(t *testing.T) {
	p := newTestPKI(t)
	st := &fakeStatus{certs: map[pki.Serial]pki.CertRecord{}}
	leaf := p.leaf(t, 77)
	st.set(pki.NewSerial(leaf.SerialNumber), pki.CertRecord{Serial: pki.NewSerial(leaf.SerialNumber), Status: pki.CertValid})
	cache, err := NewCacheSource(CacheConfig{Signer: &Signer{Issuer: p.issuer, Responder: p.responder, Key: p.respKey}, Lookups: st,
		NonceRate: 0.001, NonceBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := ocsp.CreateRequest(leaf, p.issuer, nil)
	req, err := ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	req.Nonce = []byte{0x04, 0x02, 0xab, 0xcd}
	var fresh int
	for range 5 {
		r, err := cache.Response(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if r.Fresh {
			fresh++
		}
	}
	if fresh != 2 {
		t.Fatalf("%d of 5 nonce requests were signed afresh, want the burst of 2", fresh)
	}
}
