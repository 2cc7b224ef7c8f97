package rootsign_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/rootsign"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// offlineRoot is a hierarchy whose root key went to an offline directory.
func offlineRoot(t *testing.T) (*testenv.Env, *ca.OfflineRoot) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "offline")
	env := testenv.New(t, testenv.Options{OfflineRoot: dir})
	o, err := ca.LoadOfflineRoot(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Issuing) != 1 || !o.Issuing[0].Equal(env.Hierarchy.Intermediate()) {
		t.Fatalf("offline root vouches for %d issuing CAs", len(o.Issuing))
	}
	return env, o
}

// ocspRequest asks about the issuing CA (issuer: the root).
func ocspRequest(t *testing.T, inter, root *x509.Certificate, h crypto.Hash) *ocspresponder.Request {
	t.Helper()
	der, err := ocsp.CreateRequest(inter, root, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocspresponder.ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A bundle signed offline: the root's CRL and good answers about the
// issuing CA for SHA-1 and SHA-256 CertIDs; Parse checks every signature.
func TestSignAndParse(t *testing.T) {
	env, o := offlineRoot(t)
	now := time.Now()
	b, err := rootsign.Sign(rootsign.SignOptions{Root: o.Root, Signer: o.Signer, Issuing: o.Issuing, Validity: 30 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	bun, err := rootsign.Parse(b, o.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(bun.OCSP) != 2 || bun.CRL == nil || bun.NextUpdate.Sub(now) < 30*24*time.Hour-time.Second {
		t.Fatalf("bundle: %d answers, CRL %v, next update %v", len(bun.OCSP), bun.CRL != nil, bun.NextUpdate)
	}
	c, _ := x509.ParseRevocationList(bun.CRL)
	if len(c.RevokedCertificateEntries) != 0 || c.Number.Int64() != now.Unix() {
		t.Fatalf("CRL: %d entries, number %v", len(c.RevokedCertificateEntries), c.Number)
	}
	testenv.LintCACRL(t, "root CRL", bun.CRL)
	hashes := map[crypto.Hash]bool{}
	for _, der := range bun.OCSP {
		r, err := ocsp.ParseResponse(der, o.Root)
		if err != nil || r.Status != ocsp.Good || r.SerialNumber.Cmp(env.Hierarchy.Intermediate().SerialNumber) != 0 {
			t.Fatalf("answer: %v %+v", err, r)
		}
		hashes[r.IssuerHash] = true
		testenv.LintOCSP(t, "answer about the issuing CA", der, o.Root)
	}
	if !hashes[crypto.SHA1] || !hashes[crypto.SHA256] {
		t.Fatalf("answers for CertID hashes %v, want SHA-1 and SHA-256", hashes)
	}

	// Tampering, another root, junk: refused.
	tampered := bytes.Replace(b, []byte("OCSP RESPONSE-----\n"), []byte("OCSP RESPONSE-----\nAAAA"), 1)
	other := testenv.New(t, testenv.Options{})
	for name, bad := range map[string][]byte{"tampered": tampered, "empty": nil, "junk": []byte("-----BEGIN NOTE-----\nAAAA\n-----END NOTE-----\n")} {
		if _, err := rootsign.Parse(bad, o.Root); err == nil {
			t.Errorf("%s bundle accepted", name)
		}
	}
	if _, err := rootsign.Parse(b, other.Hierarchy.Root()); err == nil {
		t.Error("a bundle of another root accepted")
	}
	if _, err := rootsign.Sign(rootsign.SignOptions{Root: o.Root, Signer: env.Hierarchy.Signer(), Issuing: o.Issuing, Validity: time.Hour}); err == nil {
		t.Error("signed with a key that is not the root's")
	}
}

// serve with an offline root publishes the bundle: OCSP about the issuing
// CA from the same responder, the root CRL; it warns as the end nears,
// refuses an older bundle, and never serves one past its nextUpdate.
func TestPublisherFromFile(t *testing.T) {
	env, o := offlineRoot(t)
	clk := &clock{now: time.Now()}
	file := filepath.Join(t.TempDir(), "root-signed.pem")
	p, err := rootsign.New(t.Context(), rootsign.Config{Root: o.Root, Issuing: o.Issuing, File: file, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warning(); !strings.Contains(w, "not published") {
		t.Fatalf("no bundle yet: warning %q", w)
	}
	crlStatus := func() int {
		rec := httptest.NewRecorder()
		p.CRLHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/crl/root", nil))
		return rec.Code
	}
	if crlStatus() != http.StatusServiceUnavailable {
		t.Fatal("a root CRL was served without a bundle")
	}
	sign := func(at time.Time, valid time.Duration) []byte {
		b, err := rootsign.Sign(rootsign.SignOptions{Root: o.Root, Signer: o.Signer, Issuing: o.Issuing, Validity: valid, Now: at})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := os.WriteFile(file, sign(clk.Now(), 30*24*time.Hour), 0o600); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p2, err := rootsign.New(runCtx, rootsign.Config{Root: o.Root, Issuing: o.Issuing, File: file, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	static := p2.Answers()
	if w := p2.Warning(); w != "" || crlStatusOf(p2) != 200 {
		t.Fatalf("fresh bundle: warning %q, CRL %d", w, crlStatusOf(p2))
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		r, err := static.Response(t.Context(), ocspRequest(t, env.Hierarchy.Intermediate(), o.Root, h))
		if err != nil || r.Answer != "good" {
			t.Fatalf("answer about the issuing CA (%v): %v", h, err)
		}
	}
	// Anything else the root did not sign answers about: unauthorized.
	dev, _ := env.Issue(t, "dev-1")
	if _, err := static.Response(t.Context(), ocspRequest(t, dev.Certificate, env.Hierarchy.Intermediate(), crypto.SHA1)); err == nil {
		t.Fatal("the root's answers cover a device")
	}

	clk.add(24*24*time.Hour + time.Minute) // 6 days left of 30
	if w := p2.Warning(); !strings.Contains(w, "run 'fleetpki root sign'") {
		t.Fatalf("6 days before the end: warning %q", w)
	}
	clk.add(6 * 24 * time.Hour)
	if crlStatusOf(p2) != http.StatusServiceUnavailable {
		t.Fatal("an expired root CRL was served")
	}
	if _, err := static.Response(t.Context(), ocspRequest(t, env.Hierarchy.Intermediate(), o.Root, crypto.SHA1)); err == nil {
		t.Fatal("an expired answer about the issuing CA was served")
	}
	if w := p2.Warning(); !strings.Contains(w, "expired") {
		t.Fatalf("expired: warning %q", w)
	}
}

func crlStatusOf(p *rootsign.Publisher) int {
	rec := httptest.NewRecorder()
	p.CRLHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/crl/root", nil))
	return rec.Code
}

// A root CRL listing a revoked issuing CA, and its answer says revoked.
func TestRevokedIssuingCA(t *testing.T) {
	env, o := offlineRoot(t)
	at := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	b, err := rootsign.Sign(rootsign.SignOptions{Root: o.Root, Signer: o.Signer, Issuing: o.Issuing, Validity: 24 * time.Hour,
		Revoked: []crl.RootEntry{{Serial: pki.NewSerial(env.Hierarchy.Intermediate().SerialNumber), At: at, Reason: pki.ReasonKeyCompromise}}})
	if err != nil {
		t.Fatal(err)
	}
	bun, err := rootsign.Parse(b, o.Root)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseRevocationList(bun.CRL)
	if len(c.RevokedCertificateEntries) != 1 || c.RevokedCertificateEntries[0].SerialNumber.Cmp(env.Hierarchy.Intermediate().SerialNumber) != 0 {
		t.Fatalf("CRL entries %v", c.RevokedCertificateEntries)
	}
	r, _ := ocsp.ParseResponse(bun.OCSP[0], o.Root)
	if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
		t.Fatalf("answer %d reason %d", r.Status, r.RevocationReason)
	}
}

// When serve holds the root key it signs the answers itself.
func TestLivePublisher(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	signer, err := env.Hierarchy.RootSigner(t.Context(), env.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := rootsign.New(t.Context(), rootsign.Config{Root: env.Hierarchy.Root(), Issuing: []*x509.Certificate{env.Hierarchy.Intermediate()},
		Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	if p.Warning() != "" {
		t.Fatalf("live: warning %q", p.Warning())
	}
	r, err := p.Answers().Response(t.Context(), ocspRequest(t, env.Hierarchy.Intermediate(), env.Hierarchy.Root(), crypto.SHA256))
	if err != nil || r.Answer != "good" {
		t.Fatalf("live answer: %v", err)
	}
	if p.OfflineCRL() != nil {
		t.Fatal("a live root serves a bundle's CRL")
	}
}
