package postgres_test

import (
	"context"
	"testing"

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
