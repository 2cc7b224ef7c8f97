package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

func testWebSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := pki.User{ID: "u-1", Name: "alice", Role: pki.RoleOperator, PasswordHash: "x", CreatedAt: base}
	if err := s.CreateUser(ctx, u, event(pki.ActionUserCreate, "alice", base)); err != nil {
		t.Fatal(err)
	}
	// The broker role (a machine identity) is storable, and the users table
	// still anchors the sessions' foreign key (SQLite rebuilt it to add the role).
	if err := s.CreateUser(ctx, pki.User{ID: "u-2", Name: "edge-1", Role: pki.RoleBroker, PasswordHash: "x", CreatedAt: base},
		event(pki.ActionUserCreate, "edge-1", base)); err != nil {
		t.Fatalf("create a broker user: %v", err)
	}
	if got, err := s.GetUser(ctx, "edge-1"); err != nil || got.Role != pki.RoleBroker {
		t.Fatalf("GetUser(edge-1) = %+v, %v", got, err)
	}
	if err := s.CreateWebSession(ctx, pki.WebSession{IDHash: "hx", UserName: "ghost", CSRF: "c", CreatedAt: base, LastSeen: base,
		ExpiresAt: base.Add(time.Hour)}); err == nil {
		t.Fatal("a session of a user that does not exist was stored: the foreign key is gone")
	}
	ws := pki.WebSession{IDHash: "h1", UserName: "alice", CSRF: "c1", CreatedAt: base, LastSeen: base, ExpiresAt: base.Add(12 * time.Hour)}
	if err := s.CreateWebSession(ctx, ws); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchWebSession(ctx, "h1", base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetWebSession(ctx, "h1")
	if err != nil || got.UserName != "alice" || got.CSRF != "c1" || !got.LastSeen.Equal(base.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("GetWebSession = %+v, %v", got, err)
	}
	if err := s.UpdateUser(ctx, "alice", true, "", event(pki.ActionUserUpdate, "alice", base)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUser(ctx, "alice"); !got.Disabled || got.PasswordHash != "x" {
		t.Fatalf("after disabling: %+v", got)
	}
	if err := s.UpdateUser(ctx, "alice", false, "y", event(pki.ActionUserUpdate, "alice", base)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUser(ctx, "alice"); got.Disabled || got.PasswordHash != "y" {
		t.Fatalf("after enabling with a new password: %+v", got)
	}
	if err := s.UpdateUser(ctx, "nobody", true, "", event(pki.ActionUserUpdate, "nobody", base)); !errors.Is(err, pki.NotFound) {
		t.Fatalf("update of a missing user: %v, want NotFound", err)
	}
	for _, h := range []string{"h2", "h3"} {
		if err := s.CreateWebSession(ctx, pki.WebSession{IDHash: h, UserName: "alice", CSRF: "c", CreatedAt: base, LastSeen: base, ExpiresAt: base.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteUserWebSessions(ctx, "alice", "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetWebSession(ctx, "h2"); err != nil {
		t.Fatalf("the kept session: %v", err)
	}
	for _, h := range []string{"h1", "h3"} {
		if _, err := s.GetWebSession(ctx, h); !errors.Is(err, pki.NotFound) {
			t.Fatalf("session %s after DeleteUserWebSessions: %v, want NotFound", h, err)
		}
	}
	if err := s.DeleteWebSession(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWebSession(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetWebSession(ctx, "h1"); !errors.Is(err, pki.NotFound) {
		t.Fatalf("after delete: %v, want NotFound", err)
	}
}

func testStats(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	now := base
	f.issue("d-1", now, nil)
	f.issue("d-2", now.Add(-2*24*time.Hour), nil)
	old := f.issue("d-3", now.Add(-10*24*time.Hour), nil)
	soon := newCert("d-4", now.Add(-340*24*time.Hour)) // expires within 30 days
	f.insert(soon, nil)
	if _, _, err := s.RevokeCertificate(ctx, old.Serial, pki.ReasonKeyCompromise, now, event(pki.ActionCertificateRevoke, string(old.Serial), now)); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx, now, 3)
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveDevices != 3 || st.IssuedToday != 1 || st.IssuedWeek != 2 || st.Revoked != 1 || st.ExpiringSoon != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if len(st.PerDay) != 3 || st.PerDay[2].Count != 1 || st.PerDay[0].Count != 1 || st.PerDay[1].Count != 0 ||
		!st.PerDay[2].Day.Equal(now.UTC().Truncate(24*time.Hour)) {
		t.Fatalf("per day = %+v", st.PerDay)
	}
}

func testAuditRecent(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := fixture{t, s}
	a := f.issue("dev-a", base, nil)
	b := f.issue("dev-b", base.Add(time.Minute), nil)
	f.issue("dev-c", base.Add(2*time.Minute), nil)
	all, err := s.ListAuditRecent(ctx, nil, 2)
	if err != nil || len(all) != 2 || all[0].Seq <= all[1].Seq {
		t.Fatalf("newest 2: %+v, %v", all, err)
	}
	some, err := s.ListAuditRecent(ctx, []string{string(a.Serial), string(b.Serial)}, 10)
	if err != nil || len(some) != 2 || some[0].Target != string(b.Serial) || some[1].Target != string(a.Serial) {
		t.Fatalf("by target: %+v, %v", some, err)
	}
	if _, err := s.ListAuditRecent(ctx, nil, 0); !errors.Is(err, pki.Invalid) {
		t.Fatalf("limit 0: %v, want Invalid", err)
	}
}
