package ca

import (
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/fleetpki/fleetpki/pki"
)

// FuzzParseCSR feeds arbitrary bytes to the CSR checks. Whatever the input,
// the result is either a CSR whose signature verifies and whose key the
// profile accepts, or a pki.Invalid error — never a panic, never another kind.
func FuzzParseCSR(f *testing.F) {
	c := newTestCA(f, newMemStore())
	p, err := c.profile(DefaultProfile)
	if err != nil {
		f.Fatal(err)
	}
	good := makeCSR(f, ecKey(f, elliptic.P256()))
	f.Add(good)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}))
	f.Add(makeCSR(f, ecKey(f, elliptic.P224())))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := parseCSR(b, p)
		if err != nil {
			if !errors.Is(err, pki.Invalid) {
				t.Fatalf("parseCSR error of another kind: %v", err)
			}
			return
		}
		if csr.CheckSignature() != nil || p.checkKey(csr.PublicKey) != nil {
			t.Fatal("parseCSR accepted a CSR that fails its own checks")
		}
	})
}
