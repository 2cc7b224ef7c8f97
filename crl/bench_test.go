package crl_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
)

// BenchmarkCRL times a full CRL of 10k, 100k and 1M revoked certificates in
// Postgres end to end (query + sign + store, RunOnce), next to
// x509.CreateRevocationList alone on the same entries, and reports the
// CRL's size and the memory the Go heap asked the OS for.
//
//	go test -run '^$' -bench CRL -benchtime 1x ./crl/
func BenchmarkCRL(b *testing.B) {
	ctx := context.Background()
	h, err := ca.Init(ctx, ca.InitOptions{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	keyID := fmt.Sprintf("%x", h.Intermediate().SubjectKeyId)
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			url := pgtest.NewDatabase(b)
			st, err := postgres.Open(ctx, url, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			seedRevoked(b, url, keyID, n)
			u, err := crl.New(crl.Config{Issuer: h.Intermediate(), Signer: h.Signer(), Store: st, URL: "http://127.0.0.1:8080/crl"})
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			var size int
			for range b.N {
				c, err := u.RunOnce(ctx)
				if err != nil {
					b.Fatal(err)
				}
				size = len(c.DER)
			}
			b.StopTimer()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(size)/(1<<20), "MiB_crl")
			b.ReportMetric(float64(after.Sys)/(1<<20), "MiB_sys")

			// The same entries, x509.CreateRevocationList alone.
			entries := make([]x509.RevocationListEntry, n)
			now := time.Now()
			for i := range entries {
				entries[i] = x509.RevocationListEntry{SerialNumber: big.NewInt(int64(i) + 1<<40), RevocationTime: now, ReasonCode: 1}
			}
			t0 := time.Now()
			if _, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now,
				NextUpdate: now.Add(time.Hour), RevokedCertificateEntries: entries}, h.Intermediate(), h.Signer()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(t0).Seconds(), "s_sign_only")
		})
	}
}

// seedRevoked inserts n revoked certificates straight into the database:
// issuing a million through the CA would take the benchmark's whole budget.
func seedRevoked(b *testing.B, url, keyID string, n int) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO devices (id, status, metadata, created_at, updated_at) VALUES ('bench', 'revoked', '{}', now(), now())`); err != nil {
		b.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO certificates (serial, device_id, profile, status, not_before, not_after, der, issuer_key_id,
		fingerprint_sha256, revoked_at, reason, created_at)
		SELECT to_hex(1099511627776 + i), 'bench', 'device', 'revoked', now() - interval '1 day', now() + interval '300 days',
			'\x00'::bytea, $1, md5(i::text), now(), 1, now()
		FROM generate_series(1, $2::int) AS i`, keyID, n)
	if err != nil {
		b.Fatal(err)
	}
}
