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
