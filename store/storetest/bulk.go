package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// testBulkRevocation: a selector's preview names exactly the valid,
// unexpired certificates of the matching devices with a hash over them; a
// job revokes its set in batches (one audit event per certificate, devices
// marked revoked), leaves certificates created after it alone, and
// finishes; an open job is listed until it finishes.
func testBulkRevocation(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	lot := map[string]string{"lot": "W41"}
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("lot-%02d", i)
		c := f.issue(id, base, lot)
		want = append(want, id+" "+string(c.Serial))
		if i == 3 { // a second certificate of one device
			c2 := f.issue(id, base.Add(time.Second), lot)
			want = append(want, id+" "+string(c2.Serial))
		}
	}
	f.issue("other-1", base, map[string]string{"lot": "W42"})
	old := newCert("lot-99", base.Add(-400*24*time.Hour)) // expired: not in the set
	f.insert(old, lot)
	gone := f.issue("lot-50", base, lot)
	if _, _, err := s.RevokeCertificate(ctx, gone.Serial, pki.ReasonSuperseded, base, event(pki.ActionCertificateRevoke, string(gone.Serial), base)); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	h := sha256.New()
	for _, line := range want {
		h.Write([]byte(line + "\n"))
	}
	sel := pki.Selector{MetaKey: "lot", MetaValue: "W41"}
	now := base.Add(time.Minute)
	m, err := s.PreviewMatching(ctx, sel, now)
	if err != nil {
		t.Fatal(err)
	}
	if m.Devices != 7 || m.Certificates != 8 || m.Hash != hex.EncodeToString(h.Sum(nil)) || len(m.Sample) != 7 || m.Sample[0] != "lot-00" {
		t.Fatalf("preview = %+v; want 7 devices, 8 certificates, hash %x", m, h.Sum(nil))
	}
	if _, err := s.PreviewMatching(ctx, pki.Selector{}, now); !errors.Is(err, pki.Invalid) {
		t.Fatalf("an empty selector: %v, want Invalid", err)
	}

	job := pki.RevocationJob{ID: "job-1", Selector: sel, SetHash: m.Hash, Reason: pki.ReasonKeyCompromise,
		Actor: pki.Actor{Name: "storetest"}, Created: now}
	if err := s.CreateRevocationJob(ctx, job, event("revocation_job.create", "job-1", now)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRevocationJob(ctx, job, event("revocation_job.create", "job-1", now)); !errors.Is(err, pki.Conflict) {
		t.Fatalf("a second job with the same id: %v, want Conflict", err)
	}
	// A certificate issued after the job started is not in its set.
	late := f.issue("lot-00", now.Add(time.Second), lot)
	if open, err := s.OpenRevocationJobs(ctx); err != nil || len(open) != 1 || open[0].ID != "job-1" || open[0].Selector != sel {
		t.Fatalf("open jobs = %+v, %v", open, err)
	}
	before := len(auditLog(t, s))
	var revoked []pki.CertRecord
	for batches := 0; ; batches++ {
		got, done, err := s.RevokeJobBatch(ctx, job, now.Add(2*time.Second), 3)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			if len(got) != 0 || batches != 3 {
				t.Fatalf("done after %d batches with %d revoked in the last; want 3 batches of 3, 3, 2", batches, len(got))
			}
			break
		}
		revoked = append(revoked, got...)
	}
	if len(revoked) != 8 {
		t.Fatalf("revoked %d certificates, want 8", len(revoked))
	}
	for _, c := range revoked {
		if c.Status != pki.CertRevoked || c.Reason != pki.ReasonKeyCompromise {
			t.Fatalf("revoked record %+v", c)
		}
	}
	if c, _ := s.GetCertificate(ctx, late.Serial); c.Status != pki.CertValid {
		t.Fatal("a certificate issued after the job started was revoked")
	}
	if d, _ := s.GetDevice(ctx, "lot-05"); d.Status != pki.DeviceRevoked {
		t.Fatalf("device lot-05 is %s, want revoked", d.Status)
	}
	if d, _ := s.GetDevice(ctx, "lot-00"); d.Status != pki.DeviceActive {
		t.Fatal("lot-00 still has a valid certificate and must stay active")
	}
	if d, _ := s.GetDevice(ctx, "other-1"); d.Status != pki.DeviceActive {
		t.Fatal("a device of another lot was touched")
	}
	evs := auditLog(t, s)[before:]
	if len(evs) != 8 {
		t.Fatalf("%d audit events for the batches, want one per certificate (8)", len(evs))
	}
	for _, e := range evs {
		if e.Action != pki.ActionCertificateRevoke || e.Details["job"] != "job-1" {
			t.Fatalf("audit event %+v", e)
		}
	}
	if open, _ := s.OpenRevocationJobs(ctx); len(open) != 0 {
		t.Fatalf("a finished job is still open: %+v", open)
	}
	if j, err := s.GetRevocationJob(ctx, "job-1"); err != nil || !j.Done || j.Revoked != 8 {
		t.Fatalf("job = %+v, %v", j, err)
	}
}
