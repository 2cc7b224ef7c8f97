package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"
)

// The CA's own service certificates — the delegated OCSP responder's and
// the HTTPS listener's — pass zlint (its OCSP-signing lints included) and
// chain to the issuing CA.
func TestServiceCertificatesLint(t *testing.T) {
	c := newTestCA(t, newMemStore())
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	resp, err := c.IssueOCSPResponderCert(context.Background(), key.Public(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ExtKeyUsage) != 1 || resp.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || resp.CheckSignatureFrom(c.Hierarchy().Intermediate()) != nil {
		t.Fatalf("responder certificate: EKU %v", resp.ExtKeyUsage)
	}
	noCheck := false
	for _, e := range resp.Extensions {
		noCheck = noCheck || e.Id.Equal(oidOCSPNoCheck)
	}
	if !noCheck {
		t.Fatal("the responder certificate lacks id-pkix-ocsp-nocheck")
	}
	zlintClean(t, "OCSP responder", resp, nil)

	srv, err := c.IssueServerCertificate(context.Background(), []string{"pki.example.com", "127.0.0.1"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Leaf.VerifyHostname("pki.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	zlintClean(t, "HTTPS server", srv.Leaf, map[string]string{
		// The CA/B Forum's rules for public TLS servers, which a private CA's
		// own listener is not:
		"e_ext_san_contains_reserved_ip":                          "the default listen address is 127.0.0.1, and the certificate must name it",
		"e_sub_cert_cert_policy_empty":                            "certificate policies are a WebPKI notion; none apply",
		"e_sub_cert_certificate_policies_missing":                 "as above",
		"w_ext_subject_key_identifier_not_recommended_subscriber": "RFC 5280 recommends the SKI; it costs nothing",
		"w_sub_cert_aia_contains_internal_names":                  "the test's public URL is http://127.0.0.1:8080",
		"w_subject_common_name_included":                          "the CN (first name) helps old clients and logs",
	})
}
