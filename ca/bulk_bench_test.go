package ca_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // to seed the benchmark's fleet in bulk

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// BenchmarkBulkRevoke100k: 100,000 devices of one lot (one certificate
// each) on Postgres; the preview of the lot and its revocation through
// ca.RevokeMatching (batches of 1,000, one audit event per certificate).
// It reports preview_s and revoke_s (the targets: < 1 s and < 30 s).
//
//	make bench BENCH=BulkRevoke100k
func BenchmarkBulkRevoke100k(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		b.StopTimer()
		url := pgtest.NewDatabase(b)
		st, err := postgres.Open(context.Background(), url, store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		seed(b, url, n)
		c, err := ca.New(context.Background(), ca.Config{Hierarchy: testHierarchy(b), Store: st, Bulk: st, PublicURL: "http://127.0.0.1:8080"})
		if err != nil {
			b.Fatal(err)
		}
		sel := pki.Selector{MetaKey: "lot", MetaValue: "BULK"}
		b.StartTimer()
		start := time.Now()
		m, err := c.PreviewMatching(context.Background(), sel)
		if err != nil || m.Devices != n {
			b.Fatalf("preview: %+v, %v", m.Devices, err)
		}
		preview := time.Since(start)
		start = time.Now()
		job, err := c.RevokeMatching(context.Background(), sel, m.Hash, pki.ReasonKeyCompromise, pki.Actor{Name: "bench"})
		if err != nil || !job.Done || job.Revoked != n {
			b.Fatalf("revoke: %+v, %v", job, err)
		}
		revoke := time.Since(start)
		b.StopTimer()
		b.ReportMetric(preview.Seconds(), "preview_s")
		b.ReportMetric(revoke.Seconds(), "revoke_s")
		st.Close()
		b.StartTimer()
	}
}

// seed inserts n active devices of lot BULK with one valid certificate
// each, in two statements (the benchmark measures revocation, not issuance).
func seed(b *testing.B, url string, n int) {
	b.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO devices (id, status, metadata, created_at, updated_at)
			SELECT 'dev-' || lpad(g::text, 6, '0'), 'active', '{"lot":"BULK"}', now() - interval '1 day', now() - interval '1 day'
			FROM generate_series(1, %d) g`, n),
		fmt.Sprintf(`INSERT INTO certificates (serial, device_id, profile, status, not_before, not_after, der, issuer_key_id,
			fingerprint_sha256, created_at)
			SELECT to_hex(g) || 'f00d', 'dev-' || lpad(g::text, 6, '0'), 'device', 'valid', now() - interval '1 day',
			now() + interval '300 days', '\x00'::bytea, 'bench', md5(g::text), now() - interval '1 day'
			FROM generate_series(1, %d) g`, n),
		`ANALYZE`,
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
}
