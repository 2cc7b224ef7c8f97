package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

func testAuditChain(t *testing.T, s store.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 6 {
				var err error
				switch j % 3 {
				case 0:
					err = s.AppendAudit(ctx, event("login.failed", fmt.Sprintf("u%d", i), base))
				case 1:
					c := newCert(fmt.Sprintf("d%d-%d", i, j), base)
					err = s.InsertCertificate(ctx, c, pki.Device{ID: c.DeviceID, CreatedAt: base, UpdatedAt: base},
						event(pki.ActionCertificateIssue, string(c.Serial), base))
				case 2:
					_, err = s.NextCRLNumber(ctx, "x") // no audit: must not disturb the chain
				}
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	evs := auditLog(t, s)
	if len(evs) != 8*4 {
		t.Fatalf("audit has %d events, want 32", len(evs))
	}
	if evs[0].PrevHash != nil {
		t.Fatalf("first event has a previous hash %x", evs[0].PrevHash)
	}
	for i := 1; i < len(evs); i++ {
		if !bytes.Equal(evs[i].PrevHash, evs[i-1].Hash) {
			t.Fatalf("event %d does not link to event %d", evs[i].Seq, evs[i-1].Seq)
		}
	}
	// Tampering shows: changing any field breaks verification.
	bad := append([]pki.AuditEvent(nil), evs...)
	bad[5].Target = "tampered"
	if _, err := pki.VerifyChain(nil, bad); err == nil {
		t.Fatal("VerifyChain accepted a tampered event")
	}
}

func testTimestamps(t *testing.T, s store.Store) {
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	at := time.Date(2026, 3, 1, 23, 59, 59, 999999999, zone) // rolls over a day in UTC
	c := newCert("tz-1", at)
	fixture{t, s}.insert(c, nil)
	got, err := s.GetCertificate(ctx, c.Serial)
	if err != nil {
		t.Fatal(err)
	}
	want := at.UTC().Truncate(time.Microsecond)
	if got.CreatedAt != want || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v (%v), want %v in UTC", got.CreatedAt, got.CreatedAt.Location(), want)
	}
	rev := at.Add(time.Nanosecond * 1500)
	rec, _, err := s.RevokeCertificate(ctx, c.Serial, pki.ReasonKeyCompromise, rev, event("r", "x", rev))
	if err != nil {
		t.Fatal(err)
	}
	if *rec.RevokedAt != rev.UTC().Truncate(time.Microsecond) || rec.RevokedAt.Location() != time.UTC {
		t.Fatalf("RevokedAt = %v, want %v", rec.RevokedAt, rev.UTC().Truncate(time.Microsecond))
	}
	evs := auditLog(t, s)
	if evs[0].Time != want {
		t.Fatalf("audit time = %v, want %v", evs[0].Time, want)
	}
	d, _ := s.GetDevice(ctx, "tz-1")
	if d.CreatedAt != want {
		t.Fatalf("device CreatedAt = %v, want %v", d.CreatedAt, want)
	}
	// Ordering comparisons use instants, not text: a certificate expiring at
	// 23:00 in UTC-10 is after one expiring at 08:00 UTC the next day.
	late := newCert("tz-2", base)
	late.NotAfter = time.Date(2027, 1, 1, 23, 0, 0, 0, time.FixedZone("HST", -10*3600)) // 2027-01-02 09:00 UTC
	fixture{t, s}.insert(late, nil)
	p, err := s.ListCertificates(ctx, store.CertFilter{Status: pki.CertExpired, Now: time.Date(2027, 1, 2, 8, 0, 0, 0, time.UTC), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Items {
		if c.Serial == late.Serial {
			t.Fatal("a certificate valid until 09:00 UTC was listed as expired at 08:00 UTC")
		}
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := pki.User{ID: "u1", Name: "alice", Role: pki.RoleOperator, PasswordHash: "$argon2id$x", CreatedAt: base}
	if err := s.CreateUser(ctx, u, event(pki.ActionUserCreate, "alice", base)); err != nil {
		t.Fatal(err)
	}
	dup := u
	dup.ID = "u2"
	if err := s.CreateUser(ctx, dup, event(pki.ActionUserCreate, "alice", base)); !errors.Is(err, pki.Conflict) {
		t.Fatalf("duplicate user: err = %v, want Conflict", err)
	}
	got, err := s.GetUser(ctx, "alice")
	if err != nil || got.ID != "u1" || got.Role != pki.RoleOperator || got.PasswordHash != u.PasswordHash || got.Disabled || !got.CreatedAt.Equal(base.Truncate(time.Microsecond)) {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	if err := s.CreateUser(ctx, pki.User{ID: "u3", Name: "bob", Role: pki.RoleAuditor, PasswordHash: "h", CreatedAt: base}, event(pki.ActionUserCreate, "bob", base)); err != nil {
		t.Fatal(err)
	}
	if us, err := s.ListUsers(ctx); err != nil || len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" {
		t.Fatalf("ListUsers = %+v, %v", us, err)
	}
	exp := base.Add(time.Hour)
	tok := pki.APIToken{ID: "t1", UserID: "u1", Hash: bytes.Repeat([]byte{7}, 32), CreatedAt: base, ExpiresAt: &exp}
	if err := s.CreateAPIToken(ctx, tok, event(pki.ActionTokenCreate, "alice", base)); err != nil {
		t.Fatal(err)
	}
	gt, gu, err := s.GetAPIToken(ctx, tok.Hash)
	if err != nil || gt.ID != "t1" || gu.Name != "alice" || gt.ExpiresAt == nil || !gt.ExpiresAt.Equal(exp.Truncate(time.Microsecond)) || gt.Revoked {
		t.Fatalf("GetAPIToken = %+v, %+v, %v", gt, gu, err)
	}
	if n := len(auditLog(t, s)); n != 3 {
		t.Fatalf("audit has %d events, want 3 (a refused user writes none)", n)
	}
}

func testCredentials(t *testing.T, s store.Store) {
	ctx := context.Background()
	exp := base.Add(time.Hour)
	c := pki.Credential{ID: "c1", Name: "line-1", Hash: bytes.Repeat([]byte{1}, 32), Profiles: []string{"device", "gateway"},
		DevicePattern: "dev-[0-9]+", NamePattern: `[a-z]+\.mqtt\.example`, ExpiresAt: &exp, MaxUses: 2, CreatedAt: base}
	if err := s.CreateCredential(ctx, c, event(pki.ActionCredentialCreate, "line-1", base)); err != nil {
		t.Fatal(err)
	}
	dup := c
	dup.ID, dup.Hash = "c2", bytes.Repeat([]byte{2}, 32)
	if err := s.CreateCredential(ctx, dup, event(pki.ActionCredentialCreate, "line-1", base)); !errors.Is(err, pki.Conflict) {
		t.Fatalf("duplicate name: err = %v, want Conflict", err)
	}
	got, err := s.GetCredentialByHash(ctx, c.Hash)
	if err != nil || got.ID != "c1" || len(got.Profiles) != 2 || got.Profiles[1] != "gateway" || got.DevicePattern != c.DevicePattern || got.NamePattern != c.NamePattern ||
		got.MaxUses != 2 || got.Uses != 0 || got.Disabled || !got.ExpiresAt.Equal(exp.Truncate(time.Microsecond)) {
		t.Fatalf("GetCredentialByHash = %+v, %v", got, err)
	}
	for i := range 2 {
		if err := s.UseCredential(ctx, "c1", base); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
	}
	if err := s.UseCredential(ctx, "c1", base); !errors.Is(err, pki.Forbidden) {
		t.Fatalf("third use of a 2-use credential: err = %v, want Forbidden", err)
	}
	if got, _ := s.GetCredentialByHash(ctx, c.Hash); got.Uses != 2 {
		t.Fatalf("uses = %d, want 2", got.Uses)
	}
	u := pki.Credential{ID: "c3", Name: "line-3", Hash: bytes.Repeat([]byte{3}, 32), Profiles: []string{"device"}, ExpiresAt: &exp, CreatedAt: base}
	if err := s.CreateCredential(ctx, u, event(pki.ActionCredentialCreate, "line-3", base)); err != nil {
		t.Fatal(err)
	}
	if err := s.UseCredential(ctx, "c3", exp); !errors.Is(err, pki.Forbidden) {
		t.Fatalf("use at expiry: err = %v, want Forbidden", err)
	}
	if err := s.UseCredential(ctx, "c3", base); err != nil {
		t.Fatalf("use of an unlimited credential: %v", err)
	}
	if err := s.DisableCredential(ctx, "c3", event(pki.ActionCredentialDisable, "line-3", base)); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableCredential(ctx, "c3", event(pki.ActionCredentialDisable, "line-3", base)); err != nil {
		t.Fatalf("disabling twice: %v", err)
	}
	if err := s.UseCredential(ctx, "c3", base); !errors.Is(err, pki.Forbidden) {
		t.Fatalf("use of a disabled credential: err = %v, want Forbidden", err)
	}
	if err := s.DisableCredential(ctx, "nope", event(pki.ActionCredentialDisable, "x", base)); !errors.Is(err, pki.NotFound) {
		t.Fatalf("disable unknown: err = %v, want NotFound", err)
	}
	if err := s.UseCredential(ctx, "nope", base); !errors.Is(err, pki.NotFound) {
		t.Fatalf("use unknown: err = %v, want NotFound", err)
	}
	cs, err := s.ListCredentials(ctx)
	if err != nil || len(cs) != 2 || cs[0].Name != "line-1" || !cs[1].Disabled {
		t.Fatalf("ListCredentials = %+v, %v", cs, err)
	}
	// Issuance under an unlimited credential counts its use in the same
	// transaction; under a limited one it does not (UseCredential did).
	unl := pki.Credential{ID: "c4", Name: "line-4", Hash: bytes.Repeat([]byte{4}, 32), Profiles: []string{"device"}, NoReenroll: true, CreatedAt: base}
	if err := s.CreateCredential(ctx, unl, event(pki.ActionCredentialCreate, "line-4", base)); err != nil {
		t.Fatal(err)
	}
	for _, credID := range []string{"c4", "c4", "c1"} {
		cert := newCert("dev-"+credID, base)
		ev := event(pki.ActionCertificateIssue, string(cert.Serial), base)
		ev.Actor.CredentialID = credID
		if err := s.InsertCertificate(ctx, cert, pki.Device{ID: cert.DeviceID, CreatedAt: base, UpdatedAt: base}, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.GetCredentialByHash(ctx, unl.Hash); got.Uses != 2 || !got.NoReenroll {
		t.Fatalf("unlimited credential counted %d uses (want 2), NoReenroll %v (want true)", got.Uses, got.NoReenroll)
	}
	if got, _ := s.GetCredentialByHash(ctx, c.Hash); got.Uses != 2 {
		t.Fatalf("limited credential counted %d uses, want still 2", got.Uses)
	}
	if n := len(auditLog(t, s)); n != 7 {
		t.Fatalf("audit has %d events, want 7 (three creations, one disable, three issues)", n)
	}
}

func testCredentialOneUse(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := pki.Credential{ID: "c1", Name: "bootstrap", Hash: bytes.Repeat([]byte{9}, 32), Profiles: []string{"device"}, MaxUses: 1, CreatedAt: base}
	if err := s.CreateCredential(ctx, c, event(pki.ActionCredentialCreate, "bootstrap", base)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ok, forbidden := 0, 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.UseCredential(ctx, "c1", base)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, pki.Forbidden):
				forbidden++
			default:
				t.Errorf("UseCredential: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || forbidden != 15 {
		t.Fatalf("%d uses succeeded and %d were refused, want 1 and 15", ok, forbidden)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetCertificate(ctx, "abc"); !errors.Is(err, pki.NotFound) {
		t.Errorf("GetCertificate: %v", err)
	}
	if _, err := s.GetDevice(ctx, "nope"); !errors.Is(err, pki.NotFound) {
		t.Errorf("GetDevice: %v", err)
	}
	if _, err := s.GetUser(ctx, "nope"); !errors.Is(err, pki.NotFound) {
		t.Errorf("GetUser: %v", err)
	}
	if _, _, err := s.GetAPIToken(ctx, []byte("nope")); !errors.Is(err, pki.NotFound) {
		t.Errorf("GetAPIToken: %v", err)
	}
	if _, err := s.GetCredentialByHash(ctx, []byte("nope")); !errors.Is(err, pki.NotFound) {
		t.Errorf("GetCredentialByHash: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// Services and devices share the devices table, told apart by kind: a
// device without one is a device, the list filters by kind, and an id
// keeps the kind it was first issued as.
func testDeviceKinds(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	f.issue("sensor-1", base, nil)
	svc := newCert("b1.mqtt.example", base)
	if err := s.InsertCertificate(ctx, svc, pki.Device{ID: svc.DeviceID, Kind: pki.KindService, Status: pki.DeviceActive, CreatedAt: base, UpdatedAt: base},
		event(pki.ActionCertificateIssue, string(svc.Serial), base)); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]pki.DeviceKind{"sensor-1": pki.KindDevice, "b1.mqtt.example": pki.KindService} {
		if d, err := s.GetDevice(ctx, id); err != nil || d.Kind != want {
			t.Errorf("GetDevice(%s) kind %q, %v; want %q", id, d.Kind, err, want)
		}
	}
	for kind, want := range map[pki.DeviceKind]string{pki.KindDevice: "sensor-1", pki.KindService: "b1.mqtt.example"} {
		page, err := s.ListDevices(ctx, store.DeviceFilter{Kind: kind, Limit: 10})
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != want {
			t.Errorf("ListDevices(kind %s) = %+v, %v; want only %s", kind, page.Items, err, want)
		}
	}
	if page, err := s.ListDevices(ctx, store.DeviceFilter{Limit: 10}); err != nil || len(page.Items) != 2 {
		t.Errorf("ListDevices(any kind) = %d, %v; want 2", len(page.Items), err)
	}
	if _, err := s.ListDevices(ctx, store.DeviceFilter{Kind: "gadget", Limit: 10}); !errors.Is(err, pki.Invalid) {
		t.Errorf("unknown kind: %v, want Invalid", err)
	}
	// Another certificate under the service's id, stored as a device's,
	// leaves the kind alone.
	again := newCert("b1.mqtt.example", base.Add(time.Hour))
	if err := s.InsertCertificate(ctx, again, pki.Device{ID: again.DeviceID, Status: pki.DeviceActive, CreatedAt: base, UpdatedAt: base.Add(time.Hour)},
		event(pki.ActionCertificateIssue, string(again.Serial), base)); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GetDevice(ctx, "b1.mqtt.example"); d.Kind != pki.KindService {
		t.Errorf("kind changed to %q", d.Kind)
	}
}
