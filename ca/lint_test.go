package ca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/fleetpki/fleetpki/pki"
)

const opensslPath = "/usr/bin/openssl"

// opensslVerify runs the real OpenSSL verifier over root → intermediate →
// leaf, for the purpose devices use the certificate for (TLS client).
func opensslVerify(t *testing.T, root, inter, leaf *x509.Certificate) {
	t.Helper()
	opensslVerifyPurpose(t, root, inter, leaf, "sslclient")
}

// opensslVerifyPurpose is opensslVerify for another purpose (sslserver).
func opensslVerifyPurpose(t *testing.T, root, inter, leaf *x509.Certificate, purpose string) {
	t.Helper()
	if _, err := os.Stat(opensslPath); err != nil {
		t.Skipf("openssl not available: %v", err)
	}
	dir := t.TempDir()
	write := func(name string, c *x509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r, i, l := write("root.pem", root), write("intermediate.pem", inter), write("leaf.pem", leaf)
	out, err := exec.Command(opensslPath, "verify", "-x509_strict", "-purpose", purpose, "-CAfile", r, "-untrusted", i, l).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != l+": OK" {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
}

// acceptedLints are the results (notice or worse) we accept, each with the
// reason it does not apply, for the root and the intermediate only: device
// certificates must pass every lint that runs. All seven are CA/B Forum
// Baseline Requirements lints for publicly-trusted TLS CAs.
var acceptedLints = map[string]string{
	// BR 7.1.2.10: a CA without digitalSignature must not sign OCSP
	// responses itself. fleetpki's OCSP responses are signed by a delegated
	// responder certificate (EKU OCSPSigning), exactly as the notice asks.
	"n_ca_digital_signature_not_set": "OCSP is signed by a delegated responder, never by the CA key",
	// BR 7.1.2.10.5: certificate policy OIDs are a WebPKI construct; a
	// private device PKI has no CP/CPS registered under the BRs.
	"e_invalid_ca_certificate_policies":     "no BR certificate policies exist for a private PKI",
	"e_sub_ca_certificate_policies_missing": "no BR certificate policies exist for a private PKI",
	// BR 7.1.2.10.2 wants countryName in CA subjects for identity vetting by
	// browsers. fleetpki does not know the operator's country, and nothing
	// in a private device PKI relies on it.
	"e_ca_country_name_missing": "private PKI: no public identity vetting; the country is unknown at Init",
	// BR 7.1.2.10.5 wants a CDP in sub-CAs. fleetpki's root signs only the
	// intermediate and publishes no CRL (ARL): revoking the intermediate
	// means re-keying the fleet's trust anchor, which no CRL would help with.
	"e_sub_ca_crl_distribution_points_missing": "the root publishes no CRL; the intermediate is replaced, not revoked",
	// BR 7.1.2.10.6 wants sub-CAs constrained by EKU. The issuing CA signs
	// device client certificates, the delegated OCSP responder (OCSPSigning)
	// and the server certificate of fleetpki's own HTTPS listener, so an EKU
	// on it would have to list all three and would constrain nothing.
	"n_sub_ca_eku_missing": "the issuing CA signs clientAuth, OCSPSigning and serverAuth certificates",
	// BR 7.1.2.10.3 wants an AIA in sub-CAs. The intermediate is made by Init,
	// before any public URL is known, and is always served with the chain
	// (GET /ca.pem, the enrollment response), so no one needs to fetch its issuer.
	"w_sub_ca_aia_missing": "the public URL is unknown at Init; the chain is always delivered whole",
}

// lintRegistry runs every lint except sources whose rules cannot apply to a
// private, non-WebPKI device CA: browser root programs (Mozilla, Apple,
// Chrome), EV, S/MIME, code signing and ETSI (eIDAS qualified certificates).
// RFC 5280/5480/3279/8813, community and CABF BR lints stay, the last with
// their non-applicable results listed in acceptedLints.
func lintRegistry(t *testing.T) lint.Registry {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: lint.SourceList{
		lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy, lint.ChromeRootStorePolicy,
		lint.CABFEVGuidelines, lint.CABFSMIMEBaselineRequirements, lint.CABFCSBaselineRequirements, lint.EtsiEsi,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// zlintClean fails on every lint result of notice level or worse that is
// not in accepted (nil for device certificates: they must pass everything).
func zlintClean(t *testing.T, what string, c *x509.Certificate, accepted map[string]string) {
	t.Helper()
	zc, err := zx509.ParseCertificate(c.Raw)
	if err != nil {
		t.Fatalf("%s: zcrypto cannot parse: %v", what, err)
	}
	res := zlint.LintCertificateEx(zc, lintRegistry(t))
	var bad []string
	for name, r := range res.Results {
		if r.Status >= lint.Notice {
			if _, ok := accepted[name]; !ok {
				bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
			}
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s: zlint findings:\n  %s", what, strings.Join(bad, "\n  "))
	}
}

func TestIssuedCertificatesVerifyAndLint(t *testing.T) {
	keys := map[string]func(t *testing.T) crypto.Signer{
		"ecdsa-p256": func(t *testing.T) crypto.Signer { return ecKey(t, elliptic.P256()) },
		"ecdsa-p384": func(t *testing.T) crypto.Signer { return ecKey(t, elliptic.P384()) },
		"rsa-2048":   func(t *testing.T) crypto.Signer { return rsaKey(t, 2048) },
	}
	for _, alg := range []KeyAlgorithm{ECDSAP256, ECDSAP384, RSA3072} {
		t.Run(string(alg), func(t *testing.T) {
			h := sharedHierarchy(t, alg)
			zlintClean(t, "root", h.Root(), acceptedLints)
			zlintClean(t, "intermediate", h.Intermediate(), acceptedLints)
			c := newTestCAWith(t, Config{Hierarchy: h})
			for keyName, key := range keys {
				t.Run("device key "+keyName, func(t *testing.T) {
					iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: "dev-" + keyName, CSR: makeCSR(t, key(t))})
					if err != nil {
						t.Fatal(err)
					}
					opensslVerify(t, h.Root(), h.Intermediate(), iss.Certificate)
					zlintClean(t, "leaf", iss.Certificate, nil)
				})
			}
		})
	}
}

// TestEd25519ProfileVerifiesAndLints covers the allowEd25519 path end to end.
func TestEd25519ProfileVerifiesAndLints(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, ProfileSpec{Name: "ed", Validity: "30d", KeyTypes: []string{KeyTypeECDSAP256}, AllowEd25519: true, Template: DeviceTemplate})
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), ProfilesDir: dir})
	_, priv, _ := ed25519.GenerateKey(nil)
	iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: "ed-1", CSR: makeCSR(t, priv), Profile: "ed"})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hierarchy()
	opensslVerify(t, h.Root(), h.Intermediate(), iss.Certificate)
	zlintClean(t, "ed25519 leaf", iss.Certificate, nil)
	if _, err := c.Issue(t.Context(), IssueRequest{DeviceID: "ed-2", CSR: makeCSR(t, priv)}); !isKind(err, pki.Invalid) {
		t.Errorf("Ed25519 under the device profile: err = %v, want pki.Invalid", err)
	}
}

// A device id past RFC 5280's 64-character CN bound is named by the URI SAN
// alone: the subject is empty, the SAN critical, zlint finds nothing, and
// OpenSSL verifies it.
func TestLongDeviceIDLints(t *testing.T) {
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256)})
	id := strings.Repeat("a", 65) + "-" + strings.Repeat("b", 60)
	iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: id, CSR: makeCSR(t, ecKey(t, elliptic.P256()))})
	if err != nil {
		t.Fatal(err)
	}
	cert := iss.Certificate
	if cert.Subject.CommonName != "" || len(cert.URIs) != 1 || cert.URIs[0].String() != pki.DeviceURI(id) {
		t.Fatalf("subject %q, URIs %v: want an empty subject and the device URI", cert.Subject, cert.URIs)
	}
	critical := false
	for _, e := range cert.Extensions {
		if e.Id.String() == "2.5.29.17" {
			critical = e.Critical
		}
	}
	if !critical {
		t.Error("the SAN of a certificate with an empty subject is not critical")
	}
	h := c.Hierarchy()
	opensslVerify(t, h.Root(), h.Intermediate(), cert)
	zlintClean(t, "long-id leaf", cert, nil)
	// 64 characters still fit the CN.
	id64 := strings.Repeat("c", 64)
	iss, err = c.Issue(t.Context(), IssueRequest{DeviceID: id64, CSR: makeCSR(t, ecKey(t, elliptic.P256()))})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Certificate.Subject.CommonName != id64 {
		t.Errorf("CN = %q, want the 64-character id", iss.Certificate.Subject.CommonName)
	}
	zlintClean(t, "64-character leaf", iss.Certificate, nil)
}
