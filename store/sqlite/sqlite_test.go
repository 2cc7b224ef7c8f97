package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/sqlite"
	"github.com/fleetpki/fleetpki/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fleetpki.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestRevocationsReachOtherProcesses: a revocation committed through one
// store is heard by a listener on another store of the same file (polling).
func TestRevocationsReachOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleetpki.db")
	storetest.RunNotify(t, func(t *testing.T) store.Backend {
		s, err := sqlite.Open(t.Context(), path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, 3*time.Second)
}

func BenchmarkInsertCertificate(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "fleetpki.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchInsert(b, s)
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleetpki.db")
	s, err := sqlite.Open(context.Background(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}
