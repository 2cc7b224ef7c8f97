package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

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

func BenchmarkInsertCertificate(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "fleetpki.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchInsert(b, s)
}
