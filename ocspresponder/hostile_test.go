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
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/pki"
)

// newResponderCert issues another delegated responder certificate (a
// rotation, or the one a restarted process makes) with a new key.
func (p *testPKI) newResponder(t *testing.T) *Signer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "Test OCSP"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}, Value: asn1.NullBytes}}}
	return &Signer{Issuer: p.issuer, Responder: mkCert(t, tmpl, p.issuer, key.Public(), p.issuerKey), Key: key}
}

// memResponses is a logic-only ResponseStore.
type memResponses struct{ m map[string]pki.OCSPResponse }

func (s *memResponses) GetOCSPResponse(_ context.Context, serial pki.Serial, hash string) (pki.OCSPResponse, error) {
	r, ok := s.m[string(serial)+hash]
	if !ok {
		return pki.OCSPResponse{}, pki.Errorf(pki.NotFound, "none")
	}
	return r, nil
}

func (s *memResponses) SaveOCSPResponses(_ context.Context, rs []pki.OCSPResponse) error {
	for _, r := range rs {
		s.m[string(r.Serial)+r.Hash] = r
	}
	return nil
}

// A nonce answer re-signs a response that an earlier responder stored
// (before a restart, or a rotation): it must name and carry the current
// responder, or every client that sends a nonce (openssl does by default)
// gets "Response Verify Failure".
func TestNonceAnswerAfterRotation(t *testing.T) {
	f := newFixture(t)
	leaf := f.pki.leaf(t, 0x5150)
	leafPath := f.pki.writePEM(t, "leaf.pem", leaf)
	serial := pki.NewSerial(leaf.SerialNumber)
	f.status.set(serial, pki.CertRecord{Serial: serial, Status: pki.CertValid, NotAfter: leaf.NotAfter})
	// A response stored by the first responder, as the presigner leaves it.
	store := &memResponses{m: map[string]pki.OCSPResponse{}}
	this := time.Now().Add(-time.Minute).Truncate(time.Second)
	der, err := f.cache.Signer().Sign(Status{Serial: leaf.SerialNumber, Good: true}, crypto.SHA1, this, this.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_ = store.SaveOCSPResponses(t.Context(), []pki.OCSPResponse{{Serial: serial, Hash: "sha1", Status: pki.CertValid, DER: der,
		ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour)}})
	// The restarted (or rotated) responder: a new certificate and key.
	rotated := f.pki.newResponder(t)
	f.status.responses = store
	cache, err := NewCacheSource(CacheConfig{Signer: rotated, Lookups: f.status, Responses: store})
	if err != nil {
		t.Fatal(err)
	}
	req, err := ocsp.CreateRequest(leaf, f.pki.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := asn1.Marshal(bytes.Repeat([]byte{7}, 16))
	parsed, err := ParseRequest(withNonceExt(t, req, nonce))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cache.Response(t.Context(), parsed)
	if err != nil || resp.Cache != "nonce" {
		t.Fatalf("nonce answer: %+v, %v", resp, err)
	}
	respPath := filepath.Join(f.pki.dir, "nonce-resp.der")
	_ = os.WriteFile(respPath, resp.DER, 0o644)
	out := openssl(t, "ocsp", "-respin", respPath, "-issuer", filepath.Join(f.pki.dir, "issuer.pem"), "-cert", leafPath,
		"-CAfile", filepath.Join(f.pki.dir, "root.pem"), "-resp_text", "-no_nonce")
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, ": good") || !strings.Contains(out, "OCSP Nonce") {
		t.Fatalf("the nonce answer after a rotation does not verify:\n%s", out)
	}
	r, err := ocsp.ParseResponseForCert(resp.DER, leaf, f.pki.issuer)
	if err != nil || !r.Certificate.Equal(rotated.Responder) {
		t.Fatalf("the nonce answer carries %v, want the current responder (%v)", r, err)
	}
	// A forced rotation in the running cache: the same holds.
	again := f.pki.newResponder(t)
	if err := cache.SetSigner(again); err != nil {
		t.Fatal(err)
	}
	resp, err = cache.Response(t.Context(), parsed)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(respPath, resp.DER, 0o644)
	if out := openssl(t, "ocsp", "-respin", respPath, "-issuer", filepath.Join(f.pki.dir, "issuer.pem"), "-cert", leafPath,
		"-CAfile", filepath.Join(f.pki.dir, "root.pem"), "-no_nonce"); !strings.Contains(out, "Response verify OK") {
		t.Fatalf("after SetSigner: %s", out)
	}
}

// withNonceExt adds an id-pkix-ocsp-nonce request extension whose value is
// value (the DER of the nonce's OCTET STRING, as RFC 8954 has it).
func withNonceExt(t *testing.T, der, value []byte) []byte {
	t.Helper()
	var raw rawOCSPRequest
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		t.Fatal(err)
	}
	raw.TBS.Extensions = []rawExtension{{ID: oidNonce, Value: value}}
	out, err := asn1.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RFC 8954: a nonce of 1 to 32 octets is echoed; longer (or malformed)
// ones get the cacheable answer without a nonce, never a signature of
// their own.
func TestNonceBounds(t *testing.T) {
	f := newFixture(t)
	leaf := f.pki.leaf(t, 0x99)
	f.status.set(pki.NewSerial(leaf.SerialNumber), pki.CertRecord{Status: pki.CertValid, NotAfter: leaf.NotAfter})
	req, _ := ocsp.CreateRequest(leaf, f.pki.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	octets := func(n int) []byte { b, _ := asn1.Marshal(bytes.Repeat([]byte{1}, n)); return b }
	for name, tc := range map[string]struct {
		value []byte
		echo  bool
	}{
		"1 octet":    {octets(1), true},
		"32 octets":  {octets(32), true},
		"33 octets":  {octets(33), false},
		"1000":       {octets(1000), false},
		"empty":      {octets(0), false},
		"not DER":    {[]byte("raw nonce bytes"), false},
		"trailing":   {append(octets(8), 0), false},
		"an integer": {[]byte{2, 1, 5}, false},
	} {
		parsed, err := ParseRequest(withNonceExt(t, req, tc.value))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp, err := f.cache.Response(t.Context(), parsed)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := resp.Cache == "nonce" && resp.Fresh; got != tc.echo {
			t.Errorf("%s: echoed = %v, want %v (cache %q)", name, got, tc.echo, resp.Cache)
		}
	}
}

// Serials this CA never issued are answered "unknown" within a budget and
// never cached (the serial is the asker's choice); past the budget the
// answer is "unauthorized", unsigned.
func TestUnknownSerialsAreNotCached(t *testing.T) {
	f := newFixture(t)
	cache, err := NewCacheSource(CacheConfig{Signer: f.cache.Signer(), Lookups: f.status, UnknownRate: 1, UnknownBurst: 5})
	if err != nil {
		t.Fatal(err)
	}
	unknown, unauthorized := 0, 0
	for i := range 50 {
		req, _ := ocsp.CreateRequest(f.pki.leaf(t, int64(1000+i)), f.pki.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
		parsed, _ := ParseRequest(req)
		resp, err := cache.Response(t.Context(), parsed)
		switch {
		case err == nil && resp.Answer == "unknown":
			unknown++
		case errors.Is(err, ErrUnauthorized):
			unauthorized++
		default:
			t.Fatalf("request %d: %+v, %v", i, resp, err)
		}
	}
	if unknown > 6 || unauthorized < 44 {
		t.Errorf("50 unknown serials: %d signed, %d unauthorized; want at most the burst signed", unknown, unauthorized)
	}
	if n := cache.Stats().Entries; n != 0 {
		t.Errorf("%d answers about unknown serials were cached", n)
	}
}

// HEAD answers like GET without the body (RFC 9110), for the HTTP caches
// in front of a responder.
func TestHeadLikeGet(t *testing.T) {
	f := newFixture(t)
	leaf := f.pki.leaf(t, 0x77)
	f.status.set(pki.NewSerial(leaf.SerialNumber), pki.CertRecord{Status: pki.CertValid, NotAfter: leaf.NotAfter})
	req, _ := ocsp.CreateRequest(leaf, f.pki.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	u := f.srv.URL + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(req))
	get, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(get.Body)
	get.Body.Close()
	head, err := http.Head(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(head.Body)
	head.Body.Close()
	if head.StatusCode != http.StatusOK || len(b) != 0 || head.Header.Get("ETag") != get.Header.Get("ETag") ||
		head.Header.Get("Content-Length") != get.Header.Get("Content-Length") || len(body) == 0 {
		t.Fatalf("HEAD: %d %v (body %d bytes); GET: %v", head.StatusCode, head.Header, len(b), get.Header)
	}
}
