package ocspresponder

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/pki"
)

// testPKI is a throw-away root, issuing CA, responder and leaves.
type testPKI struct {
	root, issuer, responder *x509.Certificate
	issuerKey, respKey      *ecdsa.PrivateKey
	dir                     string
}

func mkCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	k := func() *ecdsa.PrivateKey { key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return key }
	rootKey, issKey, respKey := k(), k(), k()
	now := time.Now()
	rootT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	root := mkCert(t, rootT, rootT, rootKey.Public(), rootKey)
	issT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Issuing CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	issuer := mkCert(t, issT, root, issKey.Public(), rootKey)
	respT := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "Test OCSP"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}, Value: asn1.NullBytes}}}
	responder := mkCert(t, respT, issuer, respKey.Public(), issKey)
	p := &testPKI{root: root, issuer: issuer, responder: responder, issuerKey: issKey, respKey: respKey, dir: t.TempDir()}
	p.writePEM(t, "root.pem", root)
	p.writePEM(t, "issuer.pem", issuer)
	return p
}

func (p *testPKI) leaf(t testing.TB, serial int64) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "dev"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, p.issuer, key.Public(), p.issuerKey)
}

func (p *testPKI) writePEM(t testing.TB, name string, c *x509.Certificate) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeStatus is a logic-only status store: certificates and, when
// responses is set, their stored responses.
type fakeStatus struct {
	mu        sync.Mutex
	certs     map[pki.Serial]pki.CertRecord
	responses *memResponses
	err       error
}

func (f *fakeStatus) LookupOCSP(_ context.Context, hash string, serials []pki.Serial) (map[pki.Serial]pki.OCSPLookup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[pki.Serial]pki.OCSPLookup{}
	for _, s := range serials {
		c, ok := f.certs[s]
		if !ok {
			continue
		}
		l := pki.OCSPLookup{Status: c.Status, RevokedAt: c.RevokedAt, Reason: c.Reason}
		if f.responses != nil {
			l.Response = f.responses.m[string(s)+hash]
		}
		out[s] = l
	}
	return out, nil
}

func (f *fakeStatus) GetCertificate(_ context.Context, s pki.Serial) (pki.CertRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return pki.CertRecord{}, f.err
	}
	c, ok := f.certs[s]
	if !ok {
		return pki.CertRecord{}, pki.Errorf(pki.NotFound, "no such certificate")
	}
	return c, nil
}

func (f *fakeStatus) set(s pki.Serial, rec pki.CertRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs[s] = rec
}

type fixture struct {
	pki    *testPKI
	status *fakeStatus
	cache  *CacheSource
	srv    *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	p := newTestPKI(t)
	st := &fakeStatus{certs: map[pki.Serial]pki.CertRecord{}}
	cache, err := NewCacheSource(CacheConfig{Signer: &Signer{Issuer: p.issuer, Responder: p.responder, Key: p.respKey}, Lookups: st})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewFilterSource(p.issuer, cache)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rs := NewResponder(src, nil, nil)
	mux.Handle("/ocsp", rs)
	mux.Handle("/ocsp/", rs)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{pki: p, status: st, cache: cache, srv: srv}
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestOpenSSLClient(t *testing.T) {
	f := newFixture(t)
	leaf := f.pki.leaf(t, 0x1234)
	leafPath := f.pki.writePEM(t, "leaf.pem", leaf)
	serial := pki.NewSerial(leaf.SerialNumber)
	f.status.set(serial, pki.CertRecord{Serial: serial, Status: pki.CertValid, NotAfter: leaf.NotAfter})
	query := func(extra ...string) string {
		args := append([]string{"ocsp", "-issuer", filepath.Join(f.pki.dir, "issuer.pem"), "-cert", leafPath,
			"-url", f.srv.URL + "/ocsp", "-CAfile", filepath.Join(f.pki.dir, "root.pem")}, extra...)
		return openssl(t, args...)
	}
	out := query("-no_nonce")
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leafPath+": good") {
		t.Fatalf("good: %s", out)
	}
	// With a nonce (openssl's default), the nonce is echoed: openssl checks
	// it and would warn "WARNING: no nonce in response" otherwise.
	out = query("-nonce", "-resp_text")
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, leafPath+": good") ||
		strings.Contains(out, "no nonce") || !strings.Contains(out, "OCSP Nonce") {
		t.Fatalf("good with nonce: %s", out)
	}
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	f.status.set(serial, pki.CertRecord{Serial: serial, Status: pki.CertRevoked, RevokedAt: &at, Reason: pki.ReasonKeyCompromise, NotAfter: leaf.NotAfter})
	start := time.Now()
	f.cache.Revoked(serial) // what the revocation event does
	out = query("-no_nonce")
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, ": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Fatalf("revoked: %s", out)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("revocation answered after %v", d)
	}

	// GET, with the request openssl builds, verified by openssl and by
	// x/crypto. The base64 is path-escaped: Go's ServeMux (used here, not in
	// serve) would redirect a path with "//" in it.
	reqPath := filepath.Join(f.pki.dir, "req.der")
	openssl(t, "ocsp", "-issuer", filepath.Join(f.pki.dir, "issuer.pem"), "-cert", leafPath, "-no_nonce", "-reqout", reqPath)
	der, _ := os.ReadFile(reqPath)
	resp, err := http.Get(f.srv.URL + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/ocsp-response" || !strings.Contains(resp.Header.Get("Cache-Control"), "public, no-transform, must-revalidate") ||
		resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Expires") == "" {
		t.Fatalf("headers: %v", resp.Header)
	}
	parsed, err := ocsp.ParseResponseForCert(body, leaf, f.pki.issuer)
	if err != nil || parsed.Status != ocsp.Revoked || parsed.RevocationReason != ocsp.KeyCompromise {
		t.Fatalf("ParseResponseForCert = %+v, %v", parsed, err)
	}
	for name, r := range zlint.LintOcspResponse(parsed).Results {
		if r.Status >= lint.Notice {
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}
	respPath := filepath.Join(f.pki.dir, "resp.der")
	_ = os.WriteFile(respPath, body, 0o644)
	out = openssl(t, "ocsp", "-respin", respPath, "-issuer", filepath.Join(f.pki.dir, "issuer.pem"), "-cert", leafPath,
		"-CAfile", filepath.Join(f.pki.dir, "root.pem"))
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, ": revoked") {
		t.Fatalf("GET response: %s", out)
	}
	// ETag → 304.
	req, _ := http.NewRequest("GET", f.srv.URL+"/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(der)), nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	r2, err := http.DefaultClient.Do(req)
	if err != nil || r2.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %v %v", r2.StatusCode, err)
	}
	r2.Body.Close()
}

func TestAnswers(t *testing.T) {
	f := newFixture(t)
	known := f.pki.leaf(t, 77)
	f.status.set(pki.NewSerial(known.SerialNumber), pki.CertRecord{Status: pki.CertValid})
	post := func(body []byte) *ocsp.Response {
		t.Helper()
		resp, err := http.Post(f.srv.URL+"/ocsp", "application/ocsp-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		b, _ := io.ReadAll(resp.Body)
		r, err := ocsp.ParseResponse(b, f.pki.issuer)
		if err != nil {
			var re ocsp.ResponseError
			if ok := asResponseError(err, &re); ok {
				return &ocsp.Response{Status: -int(re.Status)}
			}
			t.Fatalf("parse: %v", err)
		}
		return r
	}
	mk := func(c *x509.Certificate, issuer *x509.Certificate, h crypto.Hash) []byte {
		der, err := ocsp.CreateRequest(c, issuer, &ocsp.RequestOptions{Hash: h})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	if r := post(mk(known, f.pki.issuer, crypto.SHA256)); r.Status != ocsp.Good {
		t.Fatalf("SHA-256 CertID: status %d", r.Status)
	}
	if r := post(mk(f.pki.leaf(t, 99), f.pki.issuer, crypto.SHA1)); r.Status != ocsp.Unknown {
		t.Fatalf("never issued: status %d, want unknown", r.Status)
	}
	other := newTestPKI(t)
	if r := post(mk(other.leaf(t, 77), other.issuer, crypto.SHA1)); r.Status != -int(ocsp.Unauthorized) {
		t.Fatalf("other issuer: %d, want unauthorized", r.Status)
	}
	f.status.mu.Lock()
	f.status.err = pki.Errorf(pki.Unavailable, "database down")
	f.status.mu.Unlock()
	if r := post(mk(f.pki.leaf(t, 100), f.pki.issuer, crypto.SHA1)); r.Status != -int(ocsp.TryLater) {
		t.Fatalf("store down: %d, want tryLater", r.Status)
	}

	good := mk(known, f.pki.issuer, crypto.SHA1)
	for name, body := range map[string][]byte{
		"empty":     {},
		"garbage":   []byte("hello"),
		"truncated": good[:len(good)-3],
		"oversized": bytes.Repeat([]byte{0x30}, maxRequestBytes+10),
		"two ids":   twoCertIDs(t, good),
		"md5 hash":  withHashOID(t, good, asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}),
	} {
		if r := post(body); r.Status != -int(ocsp.Malformed) {
			t.Errorf("%s: status %d, want malformedRequest", name, r.Status)
		}
	}
	req, _ := http.NewRequest("DELETE", f.srv.URL+"/ocsp", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Fatalf("DELETE: %v %v", resp.StatusCode, err)
	}
	resp, err := http.Get(f.srv.URL + "/ocsp/not!base64")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, ocsp.MalformedRequestErrorResponse) {
		t.Fatalf("bad GET: %d %x, want malformedRequest", resp.StatusCode, b)
	}
}

func asResponseError(err error, re *ocsp.ResponseError) bool {
	e, ok := err.(ocsp.ResponseError)
	if ok {
		*re = e
	}
	return ok
}

// twoCertIDs rewrites a one-CertID request into one with the CertID twice.
func twoCertIDs(t *testing.T, der []byte) []byte {
	var raw rawOCSPRequest
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		t.Fatal(err)
	}
	raw.TBS.RequestList = append(raw.TBS.RequestList, raw.TBS.RequestList[0])
	out, err := asn1.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzParseRequest(f *testing.F) {
	p := newTestPKI(f)
	der, _ := ocsp.CreateRequest(p.leaf(f, 5), p.issuer, nil)
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Add(der[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err == nil && (r.SerialNumber == nil || r.SerialNumber.Sign() <= 0 || !r.HashAlgorithm.Available()) {
			t.Fatalf("accepted a request without a usable CertID: %+v", r)
		}
	})
}

// withHashOID rewrites a request's CertID hash algorithm.
func withHashOID(t *testing.T, der []byte, oid asn1.ObjectIdentifier) []byte {
	var raw rawOCSPRequest
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		t.Fatal(err)
	}
	var one singleRequest
	if _, err := asn1.Unmarshal(raw.TBS.RequestList[0].FullBytes, &one); err != nil {
		t.Fatal(err)
	}
	one.CertID.HashAlgorithm.Algorithm = oid
	b, err := asn1.Marshal(one)
	if err != nil {
		t.Fatal(err)
	}
	raw.TBS.RequestList[0] = asn1.RawValue{FullBytes: b}
	out, err := asn1.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
