package testenv

import (
	"crypto/x509"
	"slices"
	"sort"
	"strings"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"
)

// lintRegistry runs every lint except sources whose rules cannot apply to
// a private device CA (browser root programs, EV, S/MIME, code signing,
// ETSI), as package ca's lint tests do.
func lintRegistry(t testing.TB) lint.Registry {
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

// CALints are the CA/B Forum results fleetpki's root and issuing CA are
// known to get, each inapplicable to a private PKI (the reasons are in
// ca/lint_test.go's acceptedLints).
var CALints = []string{"n_ca_digital_signature_not_set", "e_invalid_ca_certificate_policies", "e_sub_ca_certificate_policies_missing",
	"e_ca_country_name_missing", "e_sub_ca_crl_distribution_points_missing", "n_sub_ca_eku_missing", "w_sub_ca_aia_missing"}

// LintCert fails t on every zlint finding of notice level or worse on c
// that is not in accepted.
func LintCert(t testing.TB, what string, c *x509.Certificate, accepted ...string) {
	t.Helper()
	zc, err := zx509.ParseCertificate(c.Raw)
	if err != nil {
		t.Fatalf("%s: zcrypto cannot parse: %v", what, err)
	}
	var bad []string
	for name, r := range zlint.LintCertificateEx(zc, lintRegistry(t)).Results {
		if r.Status >= lint.Notice && !slices.Contains(accepted, name) {
			bad = append(bad, name+" ("+r.Status.String()+": "+r.Details+")")
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s: zlint findings:\n  %s", what, strings.Join(bad, "\n  "))
	}
}

// LintCRL fails t on every zlint CRL finding of notice level or worse not
// in accepted, and when no CRL lint applied at all.
func LintCRL(t testing.TB, what string, der []byte, accepted ...string) {
	t.Helper()
	lintCRL(t, what, der, lint.GlobalRegistry(), accepted)
}

// LintCACRL is LintCRL for a CRL of CA certificates (the root's), which
// zlint must be told about: the BRs allow it 12 months, not 10 days.
func LintCACRL(t testing.TB, what string, der []byte, accepted ...string) {
	t.Helper()
	cfg, err := lint.NewConfigFromString("[e_crl_next_update_invalid]\nSubscriberCRL = false\n")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetConfiguration(cfg)
	lintCRL(t, what, der, reg, accepted)
}

func lintCRL(t testing.TB, what string, der []byte, reg lint.Registry, accepted []string) {
	t.Helper()
	zc, err := zx509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("%s: zcrypto cannot parse the CRL: %v", what, err)
	}
	ran := 0
	for name, r := range zlint.LintRevocationListEx(zc, reg).Results {
		if r.Status == lint.NA || r.Status == lint.NE {
			continue
		}
		ran++
		if r.Status >= lint.Notice && !slices.Contains(accepted, name) {
			t.Errorf("%s: zlint %s: %s %s", what, name, r.Status, r.Details)
		}
	}
	if ran == 0 {
		t.Fatalf("%s: no zlint CRL lint applied", what)
	}
}

// LintOCSP fails t on zlint's OCSP response findings of notice level or
// worse; issuer verifies the response.
func LintOCSP(t testing.TB, what string, der []byte, issuer *x509.Certificate) {
	t.Helper()
	r, err := ocsp.ParseResponse(der, issuer)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for name, res := range zlint.LintOcspResponse(r).Results {
		if res.Status >= lint.Notice {
			t.Errorf("%s: zlint %s: %s %s", what, name, res.Status, res.Details)
		}
	}
}
