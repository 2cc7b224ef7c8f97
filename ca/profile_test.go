package ca

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

func writeProfile(t *testing.T, dir string, spec ProfileSpec) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, spec.Name+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestProfilesFromDir(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, ProfileSpec{Name: "sensor", Validity: "90d", KeyTypes: []string{KeyTypeECDSAP384}, Template: DeviceTemplate})
	// A template that tries to copy the CSR's names gets none: the request
	// x509util sees carries the public key only.
	writeProfile(t, dir, ProfileSpec{Name: "sneaky", Validity: "720h", Template: `{
		"subject": {"commonName": {{ toJson .DeviceID }}, "organization": {{ toJson .Insecure.CR.Subject.Organization }}},
		"dnsNames": {{ toJson .Insecure.CR.DNSNames }},
		"emailAddresses": {{ toJson .Insecure.CR.EmailAddresses }},
		"keyUsage": ["digitalSignature"], "extKeyUsage": ["clientAuth"]}`})
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a profile"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), ProfilesDir: dir, Clock: clock})
	if got := c.Profiles(); !slices.Equal(got, []string{"broker", "device", "sensor", "server", "sneaky"}) {
		t.Errorf("Profiles() = %v", got)
	}

	iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: "s-1", CSR: makeCSR(t, ecKey(t, elliptic.P384())), Profile: "sensor"})
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.now.Add(90 * 24 * time.Hour); !iss.Certificate.NotAfter.Equal(want) || iss.Record.Profile != "sensor" {
		t.Errorf("NotAfter = %v (profile %q), want %v from the sensor profile", iss.Certificate.NotAfter, iss.Record.Profile, want)
	}
	if _, err := c.Issue(t.Context(), IssueRequest{DeviceID: "s-2", CSR: makeCSR(t, ecKey(t, elliptic.P256())), Profile: "sensor"}); !isKind(err, pki.Invalid) {
		t.Errorf("P-256 key under a P-384-only profile: err = %v, want pki.Invalid", err)
	}

	sneaky, err := c.Issue(t.Context(), IssueRequest{DeviceID: "s-3", CSR: makeCSR(t, ecKey(t, elliptic.P256())), Profile: "sneaky"})
	if err != nil {
		t.Fatal(err)
	}
	if cert := sneaky.Certificate; len(cert.DNSNames)+len(cert.EmailAddresses) != 0 || len(cert.Subject.Organization) != 0 {
		t.Errorf("CSR names reached the certificate: %v %v %v", cert.Subject, cert.DNSNames, cert.EmailAddresses)
	}
}

func TestProfileOverridesBuiltinDevice(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, ProfileSpec{Name: "device", Validity: "30d", Template: DeviceTemplate})
	clock := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), ProfilesDir: dir, Clock: clock})
	if iss := issue(t, c, "d-1"); !iss.Certificate.NotAfter.Equal(clock.now.Add(30 * 24 * time.Hour)) {
		t.Errorf("NotAfter = %v, want 30 days", iss.Certificate.NotAfter)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	h := sharedHierarchy(t, ECDSAP256)
	profileDir := func(files map[string]string) string {
		dir := t.TempDir()
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	spec := func(s ProfileSpec) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	for name, cfg := range map[string]Config{
		"invalid/no hierarchy":         {Store: newMemStore(), PublicURL: testPublicURL},
		"invalid/no store":             {Hierarchy: h, PublicURL: testPublicURL},
		"invalid/no public URL":        {Hierarchy: h, Store: newMemStore()},
		"invalid/relative public URL":  {Hierarchy: h, Store: newMemStore(), PublicURL: "/pki"},
		"invalid/ftp public URL":       {Hierarchy: h, Store: newMemStore(), PublicURL: "ftp://example.com"},
		"invalid/public URL w/ query":  {Hierarchy: h, Store: newMemStore(), PublicURL: "http://example.com/?a=b"},
		"invalid/profile unknown key":  {ProfilesDir: profileDir(map[string]string{"p.json": `{"name":"p","validty":"1d","template":"{}"}`})},
		"invalid/profile bad name":     {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "Bad Name", Validity: "1d", Template: DeviceTemplate})})},
		"invalid/profile bad validity": {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "forever", Template: DeviceTemplate})})},
		"invalid/profile too short":    {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "9s", Template: DeviceTemplate})})},
		"invalid/profile key type":     {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "1d", KeyTypes: []string{"dsa"}, Template: DeviceTemplate})})},
		"invalid/profile ed25519 type": {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "1d", KeyTypes: []string{"ed25519"}, Template: DeviceTemplate})})},
		"invalid/template syntax":      {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "1d", Template: `{ "subject": {{ toJson .Subject }`})})},
		"invalid/template misspelt":    {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "1d", Template: `{ "subject": {"commonName": {{ toJson .DeviceId }}} }`})})},
		"invalid/template makes a CA": {ProfilesDir: profileDir(map[string]string{"p.json": spec(ProfileSpec{Name: "p", Validity: "1d",
			Template: `{ "subject": {{ toJson .Subject }}, "keyUsage": ["certSign"], "basicConstraints": {"isCA": true} }`})})},
		"invalid/duplicate profile": {ProfilesDir: profileDir(map[string]string{
			"a.json": spec(ProfileSpec{Name: "p", Validity: "1d", Template: DeviceTemplate}),
			"b.json": spec(ProfileSpec{Name: "p", Validity: "2d", Template: DeviceTemplate})})},
	} {
		t.Run(name, func(t *testing.T) {
			if cfg.ProfilesDir != "" {
				cfg.Hierarchy, cfg.Store, cfg.PublicURL = h, newMemStore(), testPublicURL
			}
			if c, err := New(context.Background(), cfg); c != nil || !isKind(err, pki.Invalid) {
				t.Errorf("New = %v, %v; want nil, pki.Invalid", c, err)
			}
		})
	}
	t.Run("error/missing profiles dir", func(t *testing.T) {
		if _, err := New(context.Background(), Config{Hierarchy: h, Store: newMemStore(), PublicURL: testPublicURL, ProfilesDir: "/nonexistent/profiles"}); err == nil {
			t.Error("New accepted a missing profiles directory")
		}
	})
}

// A profile asking for it gets the Freshest CRL extension naming the delta
// CRL, encoded like a CRL Distribution Point; others do not.
func TestFreshestCRLProfile(t *testing.T) {
	dir := t.TempDir()
	writeProfile(t, dir, ProfileSpec{Name: "delta", Validity: "30d", Template: DeviceTemplate, FreshestCRL: true})
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), ProfilesDir: dir})
	iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: "d-1", CSR: makeCSR(t, ecKey(t, elliptic.P256())), Profile: "delta"})
	if err != nil {
		t.Fatal(err)
	}
	freshest := func(cert *x509.Certificate) []string {
		for _, e := range cert.Extensions {
			if !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 46}) {
				continue
			}
			var dps []struct {
				DistributionPoint struct {
					FullName []asn1.RawValue `asn1:"optional,tag:0"`
				} `asn1:"optional,tag:0"`
			}
			if rest, err := asn1.Unmarshal(e.Value, &dps); err != nil || len(rest) != 0 || e.Critical {
				t.Fatalf("Freshest CRL extension: %v (critical %v)", err, e.Critical)
			}
			var urls []string
			for _, dp := range dps {
				for _, n := range dp.DistributionPoint.FullName {
					if n.Tag == 6 {
						urls = append(urls, string(n.Bytes))
					}
				}
			}
			return urls
		}
		return nil
	}
	if got := freshest(iss.Certificate); len(got) != 1 || got[0] != testPublicURL+"/crl/delta" {
		t.Errorf("Freshest CRL = %v, want [%s/crl/delta]", got, testPublicURL)
	}
	zlintClean(t, "leaf with Freshest CRL", iss.Certificate, nil)
	if got := freshest(issue(t, c, "d-2").Certificate); got != nil {
		t.Errorf("the device profile got a Freshest CRL: %v", got)
	}
}
