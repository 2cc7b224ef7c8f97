package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
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

// Server and broker certificates for the fleet's own services: the names
// asked for, the purposes of their profile, zlint clean (bar the WebPKI
// rules a private service does not follow), and OpenSSL accepts them as
// TLS server certificates (and the broker's as a client certificate too).
func TestServiceProfiles(t *testing.T) {
	c := newTestCA(t, newMemStore())
	accepted := map[string]string{
		"e_sub_cert_cert_policy_empty":                            "certificate policies are a WebPKI notion; none apply",
		"e_sub_cert_certificate_policies_missing":                 "as above",
		"e_ext_san_contains_reserved_ip":                          "a fleet's brokers live on private addresses (10.0.0.5)",
		"w_ext_subject_key_identifier_not_recommended_subscriber": "RFC 5280 recommends the SKI; it costs nothing",
		"w_sub_cert_aia_contains_internal_names":                  "the test's public URL is http://127.0.0.1:8080",
		"w_subject_common_name_included":                          "the CN (first name) helps old clients and logs",
		"e_dnsname_not_valid_tld":                                 "a fleet's brokers have private names (.example here, .internal, .lan)",
	}
	for _, tc := range []struct {
		profile string
		eku     []x509.ExtKeyUsage
		purpose []string
	}{
		{ServerProfile, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{"sslserver"}},
		{BrokerProfile, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, []string{"sslserver", "sslclient"}},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			key := ecKey(t, elliptic.P256())
			iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: "b1-" + tc.profile, Profile: tc.profile, CSR: makeCSR(t, key),
				Names: []string{"B1.mqtt.example", "10.0.0.5", "b1.mqtt.example"}})
			if err != nil {
				t.Fatal(err)
			}
			cert := iss.Certificate
			if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "b1.mqtt.example" || len(cert.IPAddresses) != 1 || cert.Subject.CommonName != "b1.mqtt.example" {
				t.Fatalf("names: CN %q DNS %v IP %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
			}
			if len(cert.ExtKeyUsage) != len(tc.eku) || cert.ExtKeyUsage[0] != tc.eku[0] || cert.ExtKeyUsage[len(tc.eku)-1] != tc.eku[len(tc.eku)-1] {
				t.Fatalf("EKU %v, want %v", cert.ExtKeyUsage, tc.eku)
			}
			if got := cert.NotAfter.Sub(cert.NotBefore); got != 30*24*time.Hour+backdate {
				t.Errorf("lifetime %v, want 30 days", got)
			}
			if iss.Record.Profile != tc.profile {
				t.Errorf("stored profile %q", iss.Record.Profile)
			}
			zlintClean(t, tc.profile, cert, accepted)
			for _, purpose := range tc.purpose {
				opensslVerifyPurpose(t, c.Hierarchy().Root(), c.Hierarchy().Intermediate(), cert, purpose)
			}
		})
	}
	// A device profile takes no names; a service profile needs one.
	if _, err := c.Issue(t.Context(), IssueRequest{DeviceID: "d", CSR: makeCSR(t, ecKey(t, elliptic.P256())), Names: []string{"d.example"}}); !isKind(err, pki.Invalid) {
		t.Errorf("device profile with names: %v", err)
	}
	if _, err := c.Issue(t.Context(), IssueRequest{DeviceID: "s", Profile: ServerProfile, CSR: makeCSR(t, ecKey(t, elliptic.P256()))}); !isKind(err, pki.Invalid) {
		t.Errorf("server profile without names: %v", err)
	}
}
