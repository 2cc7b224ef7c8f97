package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

func testCertRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	meta := map[string]string{"lot": "2026-W41", "model": "x1"}
	c := f.issue("dev-1", base, meta)
	got, err := s.GetCertificate(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	equalCert(t, got, c)
	if got.RevokedAt != nil {
		t.Fatal("RevokedAt set on a fresh certificate")
	}
	d, err := s.GetDevice(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != pki.DeviceActive || d.Metadata["lot"] != "2026-W41" || d.Metadata["model"] != "x1" || len(d.Metadata) != 2 {
		t.Fatalf("device = %+v", d)
	}
	// A second certificate with nil metadata keeps the device's metadata;
	// with new metadata it replaces it.
	f.issue("dev-1", base.Add(time.Hour), nil)
	if d, _ = s.GetDevice(ctx, "dev-1"); d.Metadata["lot"] != "2026-W41" {
		t.Fatalf("nil metadata replaced the device's: %+v", d.Metadata)
	}
	f.issue("dev-1", base.Add(2*time.Hour), map[string]string{"lot": "2026-W42"})
	if d, _ = s.GetDevice(ctx, "dev-1"); d.Metadata["lot"] != "2026-W42" || len(d.Metadata) != 1 {
		t.Fatalf("metadata not replaced: %+v", d.Metadata)
	}
	if !d.CreatedAt.Equal(base.Truncate(time.Microsecond)) {
		t.Fatalf("device CreatedAt changed to %v", d.CreatedAt)
	}
	evs := auditLog(t, s)
	if len(evs) != 3 || evs[0].Action != pki.ActionCertificateIssue || evs[0].Target != string(c.Serial) ||
		evs[0].Actor.Name != "storetest" || evs[0].Actor.RequestID != "req-1" || evs[0].Details["k"] != "v" {
		t.Fatalf("audit = %+v", evs)
	}
}

func testDuplicateSerial(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	c := f.issue("dev-1", base, map[string]string{"a": "1"})
	dup := newCert("dev-2", base)
	dup.Serial = c.Serial
	err := s.InsertCertificate(ctx, dup, pki.Device{ID: "dev-2", Metadata: map[string]string{"a": "2"}, CreatedAt: base, UpdatedAt: base},
		event(pki.ActionCertificateIssue, string(dup.Serial), base))
	if !errors.Is(err, pki.Conflict) {
		t.Fatalf("duplicate serial: err = %v, want Conflict", err)
	}
	if _, err := s.GetDevice(ctx, "dev-2"); !errors.Is(err, pki.NotFound) {
		t.Fatalf("device of the refused certificate was written: %v", err)
	}
	if got, _ := s.GetCertificate(ctx, c.Serial); got.DeviceID != "dev-1" {
		t.Fatal("the first certificate was overwritten")
	}
	if n := len(auditLog(t, s)); n != 1 {
		t.Fatalf("audit has %d events after a refused insert, want 1", n)
	}
	// Concurrent insertions around a conflicting one all get their own outcome.
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := newCert(fmt.Sprintf("dev-c%d", i), base)
			if i%5 == 0 {
				x.Serial = c.Serial
			}
			errs[i] = s.InsertCertificate(ctx, x, pki.Device{ID: x.DeviceID, CreatedAt: base, UpdatedAt: base},
				event(pki.ActionCertificateIssue, string(x.Serial), base))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if want := i%5 == 0; errors.Is(err, pki.Conflict) != want || (!want && err != nil) {
			t.Fatalf("insert %d: err = %v (conflict expected: %v)", i, err, want)
		}
	}
	if n := len(auditLog(t, s)); n != 1+16 {
		t.Fatalf("audit has %d events, want 17", n)
	}
}

func testCertPagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	var all []pki.CertRecord
	for i := range 23 {
		all = append(all, f.issue(fmt.Sprintf("dev-%d", i%3), base.Add(time.Duration(i)*time.Second), nil))
	}
	expired := newCert("dev-0", base)
	expired.NotAfter = base.Add(-time.Hour)
	expired.NotBefore = base.Add(-2 * time.Hour)
	f.insert(expired, nil)
	all = append(all, expired)
	if _, _, err := s.RevokeCertificate(ctx, all[4].Serial, pki.ReasonKeyCompromise, base, event(pki.ActionCertificateRevoke, "x", base)); err != nil {
		t.Fatal(err)
	}
	collect := func(flt store.CertFilter) []pki.CertRecord {
		var out []pki.CertRecord
		for pages := 0; ; pages++ {
			p, err := s.ListCertificates(ctx, flt)
			if err != nil {
				t.Fatalf("ListCertificates(%+v): %v", flt, err)
			}
			if len(p.Items) > flt.Limit {
				t.Fatalf("page of %d items for limit %d", len(p.Items), flt.Limit)
			}
			out = append(out, p.Items...)
			if p.Next == "" {
				return out
			}
			if pages > 100 {
				t.Fatal("pagination does not end")
			}
			flt.Cursor = p.Next
		}
	}
	got := collect(store.CertFilter{Limit: 5})
	if len(got) != len(all) {
		t.Fatalf("listed %d certificates, want %d", len(got), len(all))
	}
	for i, c := range got { // newest first
		if c.Serial != all[len(all)-1-i].Serial {
			t.Fatalf("item %d is %s, want %s", i, c.Serial, all[len(all)-1-i].Serial)
		}
	}
	now := base.Add(time.Minute)
	for _, tc := range []struct {
		flt  store.CertFilter
		want int
	}{
		{store.CertFilter{DeviceID: "dev-1", Limit: 2}, 8},
		{store.CertFilter{DeviceID: "dev-0", Limit: 3}, 9},
		{store.CertFilter{Status: pki.CertRevoked, Limit: 2}, 1},
		{store.CertFilter{Status: pki.CertExpired, Now: now, Limit: 2}, 1},
		{store.CertFilter{Status: pki.CertValid, Now: now, Limit: 4}, 22},
		{store.CertFilter{DeviceID: "dev-0", Status: pki.CertValid, Now: now, Limit: 4}, 8},
		{store.CertFilter{DeviceID: "nobody", Limit: 4}, 0},
	} {
		if got := collect(tc.flt); len(got) != tc.want {
			t.Errorf("filter %+v: %d certificates, want %d", tc.flt, len(got), tc.want)
		}
	}
	for _, bad := range []store.CertFilter{{Cursor: "!!"}, {Cursor: "ZDpkZXYtMQ"}, {Limit: store.MaxLimit + 1}, {Limit: -1}, {Status: "weird"}} {
		if _, err := s.ListCertificates(ctx, bad); !errors.Is(err, pki.Invalid) {
			t.Errorf("ListCertificates(%+v): err = %v, want Invalid", bad, err)
		}
	}
}

func testDevicePagination(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	for i := range 17 {
		lot := "2026-W41"
		if i%2 == 1 {
			lot = "2026-W42"
		}
		f.issue(fmt.Sprintf("sensor-%02d", i), base, map[string]string{"lot": lot, "line": "A"})
	}
	f.issue("gateway-1", base, map[string]string{"lot": "2026-W41"})
	f.issue("sensor_x", base, nil) // '_' must not act as a wildcard
	if _, err := s.RevokeDevice(ctx, "sensor-03", pki.ReasonKeyCompromise, base, event(pki.ActionDeviceRevoke, "sensor-03", base)); err != nil {
		t.Fatal(err)
	}
	collect := func(flt store.DeviceFilter) []string {
		var ids []string
		for {
			p, err := s.ListDevices(ctx, flt)
			if err != nil {
				t.Fatalf("ListDevices(%+v): %v", flt, err)
			}
			for _, d := range p.Items {
				ids = append(ids, d.ID)
			}
			if p.Next == "" {
				return ids
			}
			flt.Cursor = p.Next
		}
	}
	all := collect(store.DeviceFilter{Limit: 4})
	if len(all) != 19 || all[0] != "gateway-1" || all[1] != "sensor-00" || all[18] != "sensor_x" {
		t.Fatalf("devices = %v", all)
	}
	for _, tc := range []struct {
		flt  store.DeviceFilter
		want int
	}{
		{store.DeviceFilter{IDPrefix: "sensor-", Limit: 3}, 17},
		{store.DeviceFilter{IDPrefix: "sensor-1", Limit: 3}, 7},
		{store.DeviceFilter{MetaKey: "lot", MetaValue: "2026-W41", Limit: 3}, 10},
		{store.DeviceFilter{MetaKey: "lot", MetaValue: "2026-W42", IDPrefix: "sensor-0", Limit: 3}, 5},
		{store.DeviceFilter{MetaKey: "line", MetaValue: "B", Limit: 3}, 0},
		{store.DeviceFilter{Status: pki.DeviceRevoked, Limit: 3}, 1},
		{store.DeviceFilter{Status: pki.DeviceActive, Limit: 3}, 18},
	} {
		if got := collect(tc.flt); len(got) != tc.want {
			t.Errorf("filter %+v: %d devices %v, want %d", tc.flt, len(got), got, tc.want)
		}
	}
	for _, bad := range []store.DeviceFilter{{Cursor: "garbage!"}, {Status: "gone"}, {MetaKey: "bad key"}, {Limit: 10000}} {
		if _, err := s.ListDevices(ctx, bad); !errors.Is(err, pki.Invalid) {
			t.Errorf("ListDevices(%+v): err = %v, want Invalid", bad, err)
		}
	}
}

// Expiring certificates: valid, expiring within the window, of devices
// not renewed beyond it.
func testExpiringCertificates(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	now := base
	mk := func(id string, notAfter time.Time, revoked bool) pki.CertRecord {
		c := newCert(id, base.Add(-24*time.Hour))
		c.NotAfter = notAfter
		f.insert(c, nil)
		if revoked {
			if _, _, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonKeyCompromise, now, event(pki.ActionCertificateRevoke, string(c.Serial), now)); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	soon := mk("soon", now.Add(10*24*time.Hour), false)
	mk("later", now.Add(60*24*time.Hour), false)
	mk("gone", now.Add(-time.Hour), false)
	mk("revoked", now.Add(5*24*time.Hour), true)
	mk("renewed", now.Add(3*24*time.Hour), false)
	mk("renewed", now.Add(90*24*time.Hour), false)
	page, err := s.ListCertificates(ctx, pki.CertFilter{Now: now, ExpiringBefore: now.Add(30 * 24 * time.Hour), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Serial != soon.Serial {
		var ids []string
		for _, c := range page.Items {
			ids = append(ids, c.DeviceID)
		}
		t.Fatalf("expiring within 30 days: %v, want only soon", ids)
	}
}

// Expiry notices: queued once per expiring certificate, listed when due,
// updated with each attempt's outcome.
func testExpiryNotices(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	now := base
	c := newCert("exp-1", now.Add(-time.Hour))
	c.NotAfter = now.Add(5 * 24 * time.Hour)
	f.insert(c, nil)
	far := newCert("exp-2", now.Add(-time.Hour))
	f.insert(far, nil) // a year: not expiring
	before := now.Add(30 * 24 * time.Hour)
	if n, err := s.CountExpiring(ctx, now, before); err != nil || n != 1 {
		t.Fatalf("CountExpiring = %d, %v", n, err)
	}
	for i := range 2 {
		if n, err := s.QueueExpiryNotices(ctx, now, before); err != nil || n != int64(1-i) {
			t.Fatalf("queue round %d: %d, %v (want 1 then 0: once per certificate)", i, n, err)
		}
	}
	due, err := s.ExpiryNotices(ctx, pki.NoticePending, now, 10)
	if err != nil || len(due) != 1 || due[0].Serial != c.Serial || due[0].DeviceID != "exp-1" || !due[0].NotAfter.Equal(c.NotAfter.Truncate(time.Microsecond)) {
		t.Fatalf("due: %+v, %v", due, err)
	}
	e := due[0]
	e.Attempts, e.NextAttempt, e.LastError, e.UpdatedAt = 1, now.Add(time.Minute), "HTTP 503", now
	if err := s.UpdateExpiryNotice(ctx, e); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.ExpiryNotices(ctx, pki.NoticePending, now, 10); len(due) != 0 {
		t.Fatalf("a notice retried later is due now: %+v", due)
	}
	if due, _ := s.ExpiryNotices(ctx, pki.NoticePending, now.Add(time.Minute), 10); len(due) != 1 || due[0].Attempts != 1 || due[0].LastError != "HTTP 503" {
		t.Fatalf("due after its retry time: %+v", due)
	}
	e.State, e.Attempts = pki.NoticeDead, 6
	if err := s.UpdateExpiryNotice(ctx, e); err != nil {
		t.Fatal(err)
	}
	if dead, _ := s.ExpiryNotices(ctx, pki.NoticeDead, time.Time{}, 10); len(dead) != 1 || dead[0].Attempts != 6 {
		t.Fatalf("dead letters: %+v", dead)
	}
}
