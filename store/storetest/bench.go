package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// BenchInsert measures InsertCertificate with 16 concurrent callers, each
// inserting a certificate of a new device with metadata, as issuance does.
func BenchInsert(b *testing.B, s store.Store) {
	var n atomic.Int64
	b.SetParallelism(8) // with GOMAXPROCS=2: 16 callers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := newCert(fmt.Sprint("bench-", n.Add(1)), base)
			err := s.InsertCertificate(context.Background(), c,
				pki.Device{ID: c.DeviceID, Metadata: map[string]string{"lot": "2026-W41"}, CreatedAt: base, UpdatedAt: base},
				event(pki.ActionCertificateIssue, string(c.Serial), base))
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
