package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

func testRevoke(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	c := f.issue("dev-1", base, nil)
	at := base.Add(time.Hour)
	rec, changed, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonKeyCompromise, at, event(pki.ActionCertificateRevoke, string(c.Serial), at))
	if err != nil || !changed {
		t.Fatalf("first revoke: changed=%v err=%v", changed, err)
	}
	if rec.Status != pki.CertRevoked || rec.Reason != pki.ReasonKeyCompromise || rec.RevokedAt == nil || !rec.RevokedAt.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("revoked record = %+v", rec)
	}
	rec2, changed, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonSuperseded, at.Add(time.Hour), event(pki.ActionCertificateRevoke, string(c.Serial), at))
	if err != nil || changed {
		t.Fatalf("second revoke: changed=%v err=%v", changed, err)
	}
	if rec2.Reason != pki.ReasonKeyCompromise || !rec2.RevokedAt.Equal(*rec.RevokedAt) {
		t.Fatalf("second revoke changed the record: %+v", rec2)
	}
	if d, _ := s.GetDevice(ctx, "dev-1"); d.Status != pki.DeviceRevoked {
		t.Fatalf("device with its only certificate revoked is %q", d.Status)
	}
	if n := len(auditLog(t, s)); n != 2 {
		t.Fatalf("audit has %d events, want 2 (issue, one revoke)", n)
	}
	if _, _, err := s.RevokeCertificate(ctx, "abcdef", pki.ReasonKeyCompromise, at, event("x", "y", at)); !errors.Is(err, pki.NotFound) {
		t.Fatalf("revoke unknown: err = %v, want NotFound", err)
	}
	if n := len(auditLog(t, s)); n != 2 {
		t.Fatalf("audit has %d events after revoking an unknown serial, want 2", n)
	}
}

func testConcurrentRevoke(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := fixture{t, s}.issue("dev-1", base, nil)
	var winners atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, changed, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonKeyCompromise, base, event(pki.ActionCertificateRevoke, string(c.Serial), base))
			if err != nil {
				t.Errorf("revoke: %v", err)
			}
			if changed {
				winners.Add(1)
			}
		}()
	}
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d revocations changed the certificate, want exactly 1", winners.Load())
	}
	revokes := 0
	for _, e := range auditLog(t, s) {
		if e.Action == pki.ActionCertificateRevoke {
			revokes++
		}
	}
	if revokes != 1 {
		t.Fatalf("%d revoke events, want 1", revokes)
	}
}

func testRevokeDevice(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	a := f.issue("dev-1", base, nil)
	b := f.issue("dev-1", base, nil)
	old := newCert("dev-1", base)
	old.NotAfter = base.Add(-time.Minute)
	old.NotBefore = base.Add(-time.Hour)
	f.insert(old, nil)
	other := f.issue("dev-2", base, nil)
	if _, _, err := s.RevokeCertificate(ctx, a.Serial, pki.ReasonSuperseded, base, event(pki.ActionCertificateRevoke, "a", base)); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GetDevice(ctx, "dev-1"); d.Status != pki.DeviceActive {
		t.Fatal("device revoked while it still has a valid certificate")
	}
	got, err := s.RevokeDevice(ctx, "dev-1", pki.ReasonKeyCompromise, base, event(pki.ActionDeviceRevoke, "dev-1", base))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Serial != b.Serial || got[0].Status != pki.CertRevoked || got[0].Reason != pki.ReasonKeyCompromise {
		t.Fatalf("RevokeDevice revoked %+v, want only %s", got, b.Serial)
	}
	if c, _ := s.GetCertificate(ctx, old.Serial); c.Status != pki.CertValid {
		t.Fatal("an expired certificate was revoked")
	}
	if c, _ := s.GetCertificate(ctx, a.Serial); c.Reason != pki.ReasonSuperseded {
		t.Fatal("an already revoked certificate's reason changed")
	}
	if c, _ := s.GetCertificate(ctx, other.Serial); c.Status != pki.CertValid {
		t.Fatal("another device's certificate was revoked")
	}
	if d, _ := s.GetDevice(ctx, "dev-1"); d.Status != pki.DeviceRevoked {
		t.Fatalf("device status %q after RevokeDevice", d.Status)
	}
	n := len(auditLog(t, s))
	again, err := s.RevokeDevice(ctx, "dev-1", pki.ReasonKeyCompromise, base, event(pki.ActionDeviceRevoke, "dev-1", base))
	if err != nil || len(again) != 0 {
		t.Fatalf("second RevokeDevice = %v, %v; want none, nil", again, err)
	}
	if m := len(auditLog(t, s)); m != n {
		t.Fatal("a RevokeDevice that changed nothing wrote an audit event")
	}
	if _, err := s.RevokeDevice(ctx, "nobody", pki.ReasonKeyCompromise, base, event("x", "y", base)); !errors.Is(err, pki.NotFound) {
		t.Fatalf("RevokeDevice(unknown): err = %v, want NotFound", err)
	}
}

func testListRevoked(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	live := f.issue("d1", base, nil)
	short := newCert("d2", base)
	short.NotAfter = base.Add(time.Hour)
	f.insert(short, nil)
	foreign := newCert("d3", base)
	foreign.IssuerKeyID = "ddeeff"
	f.insert(foreign, nil)
	f.issue("d4", base, nil) // never revoked
	for _, c := range []pki.CertRecord{live, short, foreign} {
		if _, _, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonKeyCompromise, base, event("r", "x", base)); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(after time.Time) []pki.RevokedCert {
		var out []pki.RevokedCert
		for c, err := range s.RevokedCerts(ctx, "aabbcc", after, time.Time{}) {
			if err != nil {
				t.Fatalf("RevokedCerts: %v", err)
			}
			out = append(out, c)
		}
		return out
	}
	if got := collect(base); len(got) != 2 || got[0].Serial > got[1].Serial {
		t.Fatalf("RevokedCerts before expiry = %+v; want 2 in serial order", got)
	}
	got := collect(base.Add(2 * time.Hour))
	if len(got) != 1 || got[0].Serial != live.Serial || got[0].Reason != pki.ReasonKeyCompromise || !got[0].RevokedAt.Equal(base.Truncate(time.Microsecond)) {
		t.Fatalf("RevokedCerts after expiry = %+v; want only %s", got, live.Serial)
	}
	// Stopping early is allowed (the rows are closed).
	for range s.RevokedCerts(ctx, "aabbcc", base, time.Time{}) {
		break
	}
	// Since a time: only what was revoked at or after it (delta CRLs).
	n := 0
	for _, err := range s.RevokedCerts(ctx, "aabbcc", base, base.Add(time.Second)) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 0 {
		t.Fatalf("%d certificates revoked since a time after every revocation", n)
	}
}

func testCRLNumbers(t *testing.T, s store.Store) {
	ctx := context.Background()
	const callers, calls = 16, 20
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for range calls {
				n, err := s.NextCRLNumber(ctx, "aabbcc")
				if err != nil {
					t.Errorf("NextCRLNumber: %v", err)
					return
				}
				if n <= last {
					t.Errorf("CRL number %d after %d", n, last)
				}
				last = n
				mu.Lock()
				if seen[n] {
					t.Errorf("CRL number %d handed out twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := int64(1); i <= callers*calls; i++ {
		if !seen[i] {
			t.Fatalf("CRL number %d missing: numbers are not dense from 1", i)
		}
	}
	if n, err := s.NextCRLNumber(ctx, "other"); err != nil || n != 1 {
		t.Fatalf("first number of another issuer = %d, %v; want 1", n, err)
	}
}
