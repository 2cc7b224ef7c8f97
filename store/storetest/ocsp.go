package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// Pre-signed OCSP responses: stored per serial and hash, found stale when
// missing, old or out of date with a revocation, and never turned back from
// revoked to good.
func testOCSPResponses(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	a, b := f.issue("dev-a", base, nil), f.issue("dev-b", base, nil)
	expired := newCert("dev-c", base.Add(-2*365*24*time.Hour))
	f.insert(expired, nil)
	now := base.Add(time.Hour)
	stale := func(signedBefore time.Time) []pki.Serial {
		t.Helper()
		recs, next, err := s.OCSPStale(ctx, "aabbcc", "sha1", signedBefore, now, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if more, _, err := s.OCSPStale(ctx, "aabbcc", "sha1", signedBefore, now, next, 10); err != nil || len(more) != 0 {
			t.Fatalf("after the cursor: %d more, %v", len(more), err)
		}
		var out []pki.Serial
		for _, r := range recs {
			out = append(out, r.Serial)
		}
		return out
	}
	if got := stale(now); len(got) != 2 || got[0] != a.Serial || got[1] != b.Serial {
		t.Fatalf("stale before signing = %v, want [%s %s] (not the expired one)", got, a.Serial, b.Serial)
	}
	resp := func(c pki.CertRecord, status pki.CertStatus, at time.Time, der string) pki.OCSPResponse {
		return pki.OCSPResponse{Serial: c.Serial, Hash: "sha1", Status: status, DER: []byte(der), ThisUpdate: at, NextUpdate: at.Add(24 * time.Hour)}
	}
	if err := s.SaveOCSPResponses(ctx, []pki.OCSPResponse{resp(a, pki.CertValid, now, "a-good"), resp(b, pki.CertValid, base, "b-good")}); err != nil {
		t.Fatal(err)
	}
	if got := stale(now.Add(-time.Minute)); len(got) != 1 || got[0] != b.Serial {
		t.Fatalf("stale after signing = %v, want only the older %s", got, b.Serial)
	}
	got, err := s.GetOCSPResponse(ctx, a.Serial, "sha1")
	if err != nil || string(got.DER) != "a-good" || got.Status != pki.CertValid || !got.ThisUpdate.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("GetOCSPResponse = %+v, %v", got, err)
	}
	if _, err := s.GetOCSPResponse(ctx, a.Serial, "sha256"); !errors.Is(err, pki.NotFound) {
		t.Fatalf("other hash: err = %v, want NotFound", err)
	}
	// A revocation makes the good response stale at once.
	if _, _, err := s.RevokeCertificate(ctx, a.Serial, pki.ReasonKeyCompromise, now, event(pki.ActionCertificateRevoke, string(a.Serial), now)); err != nil {
		t.Fatal(err)
	}
	if got := stale(base); len(got) != 1 || got[0] != a.Serial {
		t.Fatalf("stale after the revocation = %v, want [%s]", got, a.Serial)
	}
	if err := s.SaveOCSPResponses(ctx, []pki.OCSPResponse{resp(a, pki.CertRevoked, now, "a-revoked")}); err != nil {
		t.Fatal(err)
	}
	// A late "good" from a signer that raced the revocation is not stored.
	if err := s.SaveOCSPResponses(ctx, []pki.OCSPResponse{resp(a, pki.CertValid, now.Add(time.Minute), "a-late-good")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetOCSPResponse(ctx, a.Serial, "sha1"); string(got.DER) != "a-revoked" {
		t.Fatalf("stored response after a late good = %q, want a-revoked", got.DER)
	}
}

// One read answers a batch of OCSP lookups: status, revocation and the
// stored response of the asked hash; serials never issued are absent.
func testOCSPLookup(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	a, b, c := f.issue("dev-a", base, nil), f.issue("dev-b", base, nil), f.issue("dev-c", base, nil)
	at := base.Add(time.Minute)
	if err := s.SaveOCSPResponses(ctx, []pki.OCSPResponse{
		{Serial: a.Serial, Hash: "sha1", Status: pki.CertValid, DER: []byte("a-sha1"), ThisUpdate: at, NextUpdate: at.Add(time.Hour)},
		{Serial: a.Serial, Hash: "sha256", Status: pki.CertValid, DER: []byte("a-sha256"), ThisUpdate: at, NextUpdate: at.Add(time.Hour)},
		{Serial: b.Serial, Hash: "sha256", Status: pki.CertValid, DER: []byte("b-sha256"), ThisUpdate: at, NextUpdate: at.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonKeyCompromise, at, event(pki.ActionCertificateRevoke, string(c.Serial), at)); err != nil {
		t.Fatal(err)
	}
	got, err := s.LookupOCSP(ctx, "sha1", []pki.Serial{a.Serial, b.Serial, c.Serial, "7fffffffffffffff"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("LookupOCSP found %d, want 3 (not the unknown serial)", len(got))
	}
	if l := got[a.Serial]; l.Status != pki.CertValid || string(l.Response.DER) != "a-sha1" || l.Response.Status != pki.CertValid ||
		!l.Response.ThisUpdate.Equal(at.Truncate(time.Microsecond)) || !l.Response.NextUpdate.Equal(at.Add(time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("a: %+v", l)
	}
	if l := got[b.Serial]; l.Status != pki.CertValid || l.Response.DER != nil {
		t.Errorf("b (a sha256 response only): %+v", l)
	}
	if l := got[c.Serial]; l.Status != pki.CertRevoked || l.RevokedAt == nil || !l.RevokedAt.Equal(at.Truncate(time.Microsecond)) ||
		l.Reason != pki.ReasonKeyCompromise || l.Response.DER != nil {
		t.Errorf("c (revoked): %+v", l)
	}
	if got, err := s.LookupOCSP(ctx, "sha1", nil); err != nil || len(got) != 0 {
		t.Errorf("empty lookup: %v, %v", got, err)
	}
}
