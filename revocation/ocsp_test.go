package revocation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"
)

// FuzzResponse: arbitrary bytes as an OCSP response never panic and are
// never accepted: only a response signed by the issuer (or its delegate)
// is, and random bytes carry no such signature.
func FuzzResponse(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	f.Add([]byte("garbage"))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	issuer, _ := x509.ParseCertificate(der)
	der, _ = x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)},
		issuer, key.Public(), key)
	leaf, _ := x509.ParseCertificate(der)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseOCSP(b, leaf, issuer, time.Now()); err == nil {
			t.Fatalf("unsigned bytes accepted: %x → %+v", b, r)
		}
	})
}
