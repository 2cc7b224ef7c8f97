package ca

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

func TestIssueDeviceProfile(t *testing.T) {
	h := sharedHierarchy(t, ECDSAP256)
	st := newMemStore()
	clock := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	c := newTestCAWith(t, Config{Hierarchy: h, Store: st, Clock: clock})
	actor := pki.Actor{Name: "line-3", CredentialID: "cred-1"}
	iss, err := c.Issue(t.Context(), IssueRequest{
		DeviceID: "pump-0042", CSR: makeCSR(t, ecKey(t, elliptic.P256())),
		Metadata: map[string]string{"site": "hamburg"}, Actor: actor,
	})
	if err != nil {
		t.Fatal(err)
	}
	cert, inter := iss.Certificate, h.Intermediate()

	// What the certificate says comes from the profile, not from the CSR
	// (which asked for CN=admin, O=Evil Corp, a DNS name, an e-mail and another device's URI).
	if cert.Subject.String() != "CN=pump-0042" {
		t.Errorf("subject = %q, want CN=pump-0042 only", cert.Subject)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:fleetpki:device:pump-0042" {
		t.Errorf("URI SANs = %v", cert.URIs)
	}
	if len(cert.DNSNames)+len(cert.EmailAddresses)+len(cert.IPAddresses) != 0 {
		t.Errorf("CSR names leaked: dns %v email %v ip %v", cert.DNSNames, cert.EmailAddresses, cert.IPAddresses)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(cert.UnknownExtKeyUsage) != 0 {
		t.Errorf("EKU = %v, want clientAuth only", cert.ExtKeyUsage)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature || !extensionCritical(cert, asn1.ObjectIdentifier{2, 5, 29, 15}) {
		t.Errorf("key usage = %b (critical %v), want critical digitalSignature", cert.KeyUsage, extensionCritical(cert, asn1.ObjectIdentifier{2, 5, 29, 15}))
	}
	if cert.IsCA || len(cert.SubjectKeyId) == 0 || !bytes.Equal(cert.AuthorityKeyId, inter.SubjectKeyId) {
		t.Error("want a non-CA leaf with SKI and AKI = the intermediate's SKI")
	}
	if !slices.Equal(cert.OCSPServer, []string{testPublicURL + "/ocsp"}) ||
		!slices.Equal(cert.IssuingCertificateURL, []string{testPublicURL + "/ca/intermediate.crt"}) ||
		!slices.Equal(cert.CRLDistributionPoints, []string{testPublicURL + "/crl"}) {
		t.Errorf("AIA/CDP = %v %v %v", cert.OCSPServer, cert.IssuingCertificateURL, cert.CRLDistributionPoints)
	}
	if want := clock.now.Add(-time.Minute); !cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v (backdated one minute)", cert.NotBefore, want)
	}
	if want := clock.now.Add(365 * 24 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v (365 days)", cert.NotAfter, want)
	}
	if n := cert.SerialNumber; n.Sign() <= 0 || len(n.Bytes()) > 16 || n.BitLen() < 64 {
		t.Errorf("serial %x: want positive, at most 128 bits", n)
	}
	if err := cert.CheckSignatureFrom(inter); err != nil {
		t.Errorf("not signed by the intermediate: %v", err)
	}
	if len(iss.Chain) != 2 || !iss.Chain[0].Equal(inter) || !iss.Chain[1].Equal(h.Root()) {
		t.Error("Chain is not intermediate, root")
	}

	// The record is complete and is what the store holds.
	sum := sha256.Sum256(cert.Raw)
	rec := iss.Record
	want := pki.CertRecord{
		Serial: pki.NewSerial(cert.SerialNumber), DeviceID: "pump-0042", Profile: "device", Status: pki.CertValid,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw, IssuerKeyID: hex.EncodeToString(inter.SubjectKeyId),
		FingerprintSHA256: hex.EncodeToString(sum[:]), CreatedAt: clock.now,
	}
	if fmt.Sprint(rec) != fmt.Sprint(want) {
		t.Errorf("record =\n%+v\nwant\n%+v", rec, want)
	}
	if rec.NotBefore.Location() != time.UTC || rec.NotAfter.Location() != time.UTC || rec.CreatedAt.Location() != time.UTC {
		t.Error("record times are not UTC")
	}
	stored, err := st.GetCertificate(t.Context(), rec.Serial)
	if err != nil || fmt.Sprint(stored) != fmt.Sprint(rec) {
		t.Errorf("stored record = %+v (err %v), want the returned one", stored, err)
	}
	if dev := st.devices["pump-0042"]; dev.Status != pki.DeviceActive || dev.Metadata["site"] != "hamburg" {
		t.Errorf("device = %+v", dev)
	}
	evs := st.events()
	if len(evs) != 1 {
		t.Fatalf("audit events = %d, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Action != pki.ActionCertificateIssue || ev.Target != string(rec.Serial) || ev.Actor != actor ||
		ev.Details["profile"] != "device" || ev.Details["fingerprint"] != rec.FingerprintSHA256 ||
		ev.Details["not_after"] != rec.NotAfter.Format(time.RFC3339) || ev.Details["device_id"] != "pump-0042" {
		t.Errorf("audit event = %+v", ev)
	}
}

func extensionCritical(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical
		}
	}
	return false
}

func TestIssueClampsToIssuerLifetime(t *testing.T) {
	h := sharedHierarchy(t, ECDSAP256)
	clock := &fakeClock{now: h.Intermediate().NotAfter.Add(-10 * 24 * time.Hour)}
	c := newTestCAWith(t, Config{Hierarchy: h, Clock: clock})
	iss := issue(t, c, "late-device")
	if !iss.Certificate.NotAfter.Equal(h.Intermediate().NotAfter) {
		t.Errorf("NotAfter = %v, want the issuer's %v", iss.Certificate.NotAfter, h.Intermediate().NotAfter)
	}
	clock.Add(11 * 24 * time.Hour) // the issuer has expired
	if _, err := c.Issue(t.Context(), IssueRequest{DeviceID: "too-late", CSR: makeCSR(t, ecKey(t, elliptic.P256()))}); !isKind(err, pki.Unavailable) {
		t.Errorf("issue under an expired CA: err = %v, want pki.Unavailable", err)
	}
}

func TestIssueAcceptsDERCSR(t *testing.T) {
	block, _ := pem.Decode(makeCSR(t, ecKey(t, elliptic.P384())))
	iss, err := newTestCA(t, nil).Issue(t.Context(), IssueRequest{DeviceID: "der-1", CSR: block.Bytes})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Certificate.Subject.CommonName != "der-1" {
		t.Errorf("CN = %q", iss.Certificate.Subject.CommonName)
	}
}

func TestIssueRefusesBadInput(t *testing.T) {
	good := makeCSR(t, ecKey(t, elliptic.P256()))
	block, _ := pem.Decode(good)
	tampered := bytes.Clone(block.Bytes)
	tampered[len(tampered)-1] ^= 0x01 // the last byte is inside the signature
	tooManyKeys := map[string]string{}
	for i := range 33 {
		tooManyKeys[fmt.Sprint("k", i)] = "v"
	}
	for name, req := range map[string]IssueRequest{
		"invalid/malformed CSR":             {DeviceID: "d1", CSR: []byte("this is not a CSR")},
		"invalid/malformed DER":             {DeviceID: "d1", CSR: block.Bytes[:40]},
		"invalid/empty CSR":                 {DeviceID: "d1"},
		"invalid/broken PEM":                {DeviceID: "d1", CSR: []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!\n")},
		"invalid/PEM of a certificate":      {DeviceID: "d1", CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})},
		"invalid/data after PEM":            {DeviceID: "d1", CSR: append(bytes.Clone(good), []byte("junk")...)},
		"invalid/tampered signature":        {DeviceID: "d1", CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})},
		"invalid/RSA-1024":                  {DeviceID: "d1", CSR: makeCSR(t, rsaKey(t, 1024))},
		"invalid/curve P-224":               {DeviceID: "d1", CSR: makeCSR(t, ecKey(t, elliptic.P224()))},
		"invalid/curve P-521":               {DeviceID: "d1", CSR: makeCSR(t, ecKey(t, elliptic.P521()))},
		"invalid/empty device id":           {DeviceID: "", CSR: good},
		"invalid/control character in id":   {DeviceID: "dev\x01ice", CSR: good},
		"invalid/newline in id":             {DeviceID: "dev\nice", CSR: good},
		"invalid/device id of 129 bytes":    {DeviceID: strings.Repeat("a", 129), CSR: good},
		"invalid/topic wildcard in id":      {DeviceID: "dev/+", CSR: good},
		"invalid/unknown profile":           {DeviceID: "d1", CSR: good, Profile: "gateway"},
		"invalid/metadata with 33 keys":     {DeviceID: "d1", CSR: good, Metadata: tooManyKeys},
		"invalid/metadata control in value": {DeviceID: "d1", CSR: good, Metadata: map[string]string{"k": "a\x00b"}},
	} {
		t.Run(name, func(t *testing.T) {
			st := newMemStore()
			iss, err := newTestCA(t, st).Issue(t.Context(), req)
			if !isKind(err, pki.Invalid) || iss != nil {
				t.Errorf("Issue = %v, %v; want nil, pki.Invalid", iss, err)
			}
			if pki.Message(err) == "" {
				t.Errorf("error %v has no caller-safe message", err)
			}
			if certs, events := st.counts(); certs != 0 || events != 0 {
				t.Errorf("store holds %d certificates and %d events after refused input", certs, events)
			}
		})
	}
	t.Run("ok/128-byte device id", func(t *testing.T) {
		if _, err := newTestCA(t, nil).Issue(t.Context(), IssueRequest{DeviceID: strings.Repeat("a", 128), CSR: good}); err != nil {
			t.Errorf("128-byte id refused: %v", err)
		}
	})
}

func TestIssueStoreFailureReturnsNoCertificate(t *testing.T) {
	dbDown := errors.New("connection refused")
	c := newTestCA(t, failingStore{memStore: newMemStore(), err: dbDown})
	iss, err := c.Issue(t.Context(), IssueRequest{DeviceID: "d1", CSR: makeCSR(t, ecKey(t, elliptic.P256()))})
	if iss != nil || !errors.Is(err, dbDown) || !isKind(err, pki.Unavailable) {
		t.Errorf("Issue = %v, %v; want nil and an Unavailable error wrapping the store's", iss, err)
	}
}

func TestIssueRetriesSerialCollision(t *testing.T) {
	t.Run("ok/one collision", func(t *testing.T) {
		st := &collidingStore{memStore: newMemStore(), n: 1}
		iss := issue(t, newTestCA(t, st), "d1")
		if len(st.serials) != 2 || st.serials[0] == st.serials[1] {
			t.Fatalf("serials offered = %v, want two different ones", st.serials)
		}
		if iss.Record.Serial != st.serials[1] || pki.NewSerial(iss.Certificate.SerialNumber) != st.serials[1] {
			t.Error("the returned certificate does not carry the serial that was stored")
		}
		if certs, events := st.counts(); certs != 1 || events != 1 {
			t.Errorf("store holds %d certificates, %d events; want 1, 1", certs, events)
		}
	})
	t.Run("conflict/persistent", func(t *testing.T) {
		st := &collidingStore{memStore: newMemStore(), n: 100}
		iss, err := newTestCA(t, st).Issue(t.Context(), IssueRequest{DeviceID: "d1", CSR: makeCSR(t, ecKey(t, elliptic.P256()))})
		if iss != nil || !isKind(err, pki.Conflict) || len(st.serials) != maxSerialAttempts {
			t.Errorf("Issue = %v, %v after %d attempts; want nil, pki.Conflict after %d", iss, err, len(st.serials), maxSerialAttempts)
		}
	})
}

func TestIssueConcurrent(t *testing.T) {
	st := newMemStore()
	c := newTestCA(t, st)
	csr := makeCSR(t, ecKey(t, elliptic.P256()))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			_, err := c.Issue(context.Background(), IssueRequest{DeviceID: fmt.Sprint("dev-", i), CSR: csr})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if certs, _ := st.counts(); certs != 16 {
		t.Errorf("stored %d certificates, want 16", certs)
	}
}

func TestRenew(t *testing.T) {
	st := newMemStore()
	clock := &fakeClock{now: time.Now().UTC()}
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), Store: st, Clock: clock})
	orig, err := c.Issue(t.Context(), IssueRequest{DeviceID: "renew-me", CSR: makeCSR(t, ecKey(t, elliptic.P256())), Metadata: map[string]string{"fw": "1.2"}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ok/new certificate for the same device", func(t *testing.T) {
		clock.Add(24 * time.Hour)
		iss, err := c.Renew(t.Context(), orig.Certificate, makeCSR(t, ecKey(t, elliptic.P384())), pki.Actor{Name: "device"})
		if err != nil {
			t.Fatal(err)
		}
		if iss.Record.DeviceID != "renew-me" || iss.Record.Profile != "device" || iss.Record.Serial == orig.Record.Serial {
			t.Errorf("renewed record = %+v", iss.Record)
		}
		if iss.Certificate.Subject.CommonName != "renew-me" || !iss.Certificate.NotBefore.After(orig.Certificate.NotBefore) {
			t.Error("renewed certificate has the wrong subject or validity")
		}
		if md := st.devices["renew-me"].Metadata; md["fw"] != "1.2" {
			t.Errorf("metadata after renew = %v, want unchanged", md)
		}
		evs := st.events()
		last := evs[len(evs)-1]
		if last.Action != pki.ActionCertificateRenew || last.Details["renewed_serial"] != string(orig.Record.Serial) {
			t.Errorf("audit event = %+v", last)
		}
	})

	other := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP384)})
	foreign := issue(t, other, "renew-me")
	unstored := issue(t, newTestCA(t, nil), "renew-me") // same CA, another store
	revoked := issue(t, c, "renew-me")
	if _, err := c.Revoke(t.Context(), revoked.Record.Serial, pki.ReasonKeyCompromise, pki.Actor{}); err != nil {
		t.Fatal(err)
	}
	csr := makeCSR(t, ecKey(t, elliptic.P256()))
	for name, tc := range map[string]struct {
		cert *x509.Certificate
		csr  []byte
		kind *pki.Kind
	}{
		"forbidden/another CA's certificate": {foreign.Certificate, csr, pki.Forbidden},
		"forbidden/not in the store":         {unstored.Certificate, csr, pki.Forbidden},
		"forbidden/revoked":                  {revoked.Certificate, csr, pki.Forbidden},
		"invalid/no certificate":             {nil, csr, pki.Invalid},
		"invalid/weak key":                   {orig.Certificate, makeCSR(t, rsaKey(t, 1024)), pki.Invalid},
	} {
		t.Run(name, func(t *testing.T) {
			if iss, err := c.Renew(t.Context(), tc.cert, tc.csr, pki.Actor{}); iss != nil || !isKind(err, tc.kind) {
				t.Errorf("Renew = %v, %v; want nil, %v", iss, err, tc.kind)
			}
		})
	}
	t.Run("forbidden/expired", func(t *testing.T) {
		clock.Add(400 * 24 * time.Hour)
		if _, err := c.Renew(t.Context(), orig.Certificate, csr, pki.Actor{}); !isKind(err, pki.Forbidden) {
			t.Errorf("err = %v, want pki.Forbidden", err)
		}
	})
}

// A device renewing in a loop holds at most MaxValidPerDevice valid
// certificates; revoking one (superseded) makes room again.
func TestRenewBound(t *testing.T) {
	c := newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), Store: newMemStore(), MaxValidPerDevice: 3})
	cur, err := c.Issue(t.Context(), IssueRequest{DeviceID: "looper", CSR: makeCSR(t, ecKey(t, elliptic.P256()))})
	if err != nil {
		t.Fatal(err)
	}
	var renewed *Issued
	for i := range 2 {
		if renewed, err = c.Renew(t.Context(), cur.Certificate, makeCSR(t, ecKey(t, elliptic.P256())), pki.Actor{}); err != nil {
			t.Fatalf("renewal %d: %v", i+1, err)
		}
	}
	if iss, err := c.Renew(t.Context(), cur.Certificate, makeCSR(t, ecKey(t, elliptic.P256())), pki.Actor{}); iss != nil || !isKind(err, pki.Conflict) {
		t.Fatalf("a renewal past 3 valid certificates: %v, %v; want pki.Conflict", iss, err)
	}
	// Superseding the old certificate makes room again.
	if _, err := c.Revoke(t.Context(), cur.Record.Serial, pki.ReasonSuperseded, pki.Actor{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(t.Context(), renewed.Certificate, makeCSR(t, ecKey(t, elliptic.P256())), pki.Actor{}); err != nil {
		t.Fatalf("renewal after superseding the old certificate: %v", err)
	}
}
