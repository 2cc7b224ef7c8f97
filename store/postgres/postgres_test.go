package postgres_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
	"github.com/fleetpki/fleetpki/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func BenchmarkInsertCertificate(b *testing.B) {
	s, err := postgres.Open(context.Background(), pgtest.NewDatabase(b), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchInsert(b, s)
}

// TestRevocationsReachOtherProcesses: a revocation committed through one
// store is told to a listener on another store of the same database.
func TestRevocationsReachOtherProcesses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := pgtest.NewDatabase(t)
	a, err := postgres.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan pki.Serial, 16)
	go func() { _ = b.ListenRevocations(ctx, slog.New(slog.DiscardHandler), func(s pki.Serial) { got <- s }) }()
	time.Sleep(200 * time.Millisecond) // let LISTEN take effect

	now := time.Now()
	rec := pki.CertRecord{Serial: "abc123", DeviceID: "d1", Profile: "device", Status: pki.CertValid, NotBefore: now,
		NotAfter: now.Add(time.Hour), DER: []byte{1}, IssuerKeyID: "k", FingerprintSHA256: "f1", CreatedAt: now}
	ev := pki.AuditEvent{Time: now, Action: pki.ActionCertificateIssue, Target: "abc123"}
	if err := a.InsertCertificate(ctx, rec, pki.Device{ID: "d1", CreatedAt: now, UpdatedAt: now}, ev); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := a.RevokeCertificate(ctx, "abc123", pki.ReasonKeyCompromise, now, pki.AuditEvent{Time: now, Action: pki.ActionCertificateRevoke}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "abc123" {
			t.Fatalf("told %q", s)
		}
		t.Logf("the other store heard of the revocation after %v", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("no notification within 1 s")
	}
	// Revoking again changes nothing and tells nothing.
	if _, _, err := a.RevokeCertificate(ctx, "abc123", pki.ReasonKeyCompromise, now, pki.AuditEvent{Time: now}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Fatalf("an idempotent revoke was told: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
}

// One process at a time holds a role; closing (or losing) the holder's
// session lets another take it.
func TestLeader(t *testing.T) {
	url := pgtest.NewDatabase(t)
	open := func() *postgres.Store {
		s, err := postgres.Open(t.Context(), url, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open().Leader("crl:x"), open().Leader("crl:x")
	if ok, err := a.IsLeader(t.Context()); !ok || err != nil {
		t.Fatalf("first IsLeader = %v, %v", ok, err)
	}
	if ok, err := a.IsLeader(t.Context()); !ok || err != nil {
		t.Fatalf("the holder lost the role: %v, %v", ok, err)
	}
	if ok, err := b.IsLeader(t.Context()); ok || err != nil {
		t.Fatalf("a second process took a held role: %v, %v", ok, err)
	}
	if ok, _ := open().Leader("crl:other").IsLeader(t.Context()); !ok {
		t.Fatal("another role was not free")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.IsLeader(t.Context()); !ok || err != nil {
		t.Fatalf("after the holder closed, IsLeader = %v, %v", ok, err)
	}
}
