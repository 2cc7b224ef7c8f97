package postgres_test

import (
	"context"
	"testing"
	"time"

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
	url := pgtest.NewDatabase(t)
	storetest.RunNotify(t, func(t *testing.T) store.Backend {
		s, err := postgres.Open(t.Context(), url, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, time.Second)
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
