package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/store/postgres/pgtest"
	"github.com/fleetpki/fleetpki/store/sqlite"
)

// These tests run the CA over the real backends, where the fakes of the
// package's own tests cannot show durability, events and concurrency.

type backend struct {
	name string
	open func(t testing.TB) store.Store
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t testing.TB) store.Store {
			s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fleetpki.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"postgres", func(t testing.TB) store.Store {
			s, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}

// testHierarchy makes a P-256 hierarchy (fast enough to make per test).
func testHierarchy(t testing.TB) *ca.Hierarchy {
	t.Helper()
	h, err := ca.Init(context.Background(), ca.InitOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newCA(t testing.TB, st store.Store) *ca.CA {
	t.Helper()
	c, err := ca.New(context.Background(), ca.Config{Hierarchy: testHierarchy(t), Store: st, PublicURL: "http://127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func csrFor(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestIssueRevokeOnRealStores(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st := b.open(t)
			c := newCA(t, st)
			events, cancel := c.Subscribe(16)
			defer cancel()

			iss, err := c.Issue(ctx, ca.IssueRequest{DeviceID: "sensor-1", CSR: csrFor(t), Metadata: map[string]string{"lot": "2026-W41"},
				Actor: pki.Actor{Name: "test", CredentialID: "cred-1"}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.GetCertificate(ctx, iss.Record.Serial)
			if err != nil {
				t.Fatalf("issued certificate not in the store: %v", err)
			}
			if string(got.DER) != string(iss.Certificate.Raw) || got.DeviceID != "sensor-1" || got.Status != pki.CertValid {
				t.Fatalf("stored record = %+v", got)
			}
			if d, err := st.GetDevice(ctx, "sensor-1"); err != nil || d.Metadata["lot"] != "2026-W41" {
				t.Fatalf("device = %+v, %v", d, err)
			}

			// Bad input stores nothing.
			before, _ := st.ListAudit(ctx, 0, 100)
			for name, req := range map[string]ca.IssueRequest{
				"garbage CSR":  {DeviceID: "sensor-2", CSR: []byte("garbage")},
				"control char": {DeviceID: "sensor\x01", CSR: csrFor(t)},
				"empty id":     {DeviceID: "", CSR: csrFor(t)},
			} {
				if _, err := c.Issue(ctx, req); !errors.Is(err, pki.Invalid) {
					t.Errorf("%s: err = %v, want Invalid", name, err)
				}
			}
			after, _ := st.ListAudit(ctx, 0, 100)
			if len(after) != len(before) {
				t.Fatal("refused requests wrote audit events")
			}
			if _, err := st.GetDevice(ctx, "sensor-2"); !errors.Is(err, pki.NotFound) {
				t.Fatal("a refused request created a device")
			}

			renewed, err := c.Renew(ctx, iss.Certificate, csrFor(t), pki.Actor{Name: "device:sensor-1"})
			if err != nil {
				t.Fatal(err)
			}
			if renewed.Record.DeviceID != "sensor-1" || renewed.Record.Serial == iss.Record.Serial {
				t.Fatalf("renewed = %+v", renewed.Record)
			}
			if d, _ := st.GetDevice(ctx, "sensor-1"); d.Metadata["lot"] != "2026-W41" {
				t.Fatal("renewal dropped the device's metadata")
			}

			revoked, err := c.RevokeDevice(ctx, "sensor-1", pki.ReasonKeyCompromise, pki.Actor{Name: "operator"})
			if err != nil || len(revoked) != 2 {
				t.Fatalf("RevokeDevice = %d records, %v; want 2", len(revoked), err)
			}
			seen := map[pki.Serial]bool{}
			for range 2 {
				select {
				case ev := <-events:
					seen[ev.Serial] = true
					if ev.Reason != pki.ReasonKeyCompromise || ev.DeviceID != "sensor-1" {
						t.Fatalf("event = %+v", ev)
					}
				case <-time.After(time.Second):
					t.Fatal("no revocation event within 1 s")
				}
			}
			if !seen[iss.Record.Serial] || !seen[renewed.Record.Serial] {
				t.Fatalf("events for %v, want both certificates", seen)
			}
			if _, err := c.Renew(ctx, iss.Certificate, csrFor(t), pki.Actor{}); !errors.Is(err, pki.Forbidden) {
				t.Fatalf("renew with a revoked certificate: err = %v, want Forbidden", err)
			}
			if rec, err := c.Revoke(ctx, iss.Record.Serial, pki.ReasonSuperseded, pki.Actor{}); err != nil || rec.Reason != pki.ReasonKeyCompromise {
				t.Fatalf("revoking again = %+v, %v; want the first revocation kept", rec, err)
			}
			select {
			case ev := <-events:
				t.Fatalf("an idempotent revoke published %+v", ev)
			default:
			}
			auditLog := audit.New(st, nil)
			if n, err := auditLog.Verify(ctx); err != nil || n != 3 {
				t.Fatalf("VerifyAudit = %d, %v; want 3 events (issue, renew, device revoke)", n, err)
			}
		})
	}
}

// BenchmarkIssueStore measures Issue end to end on each real backend with
// 16 concurrent callers, next to x509.CreateCertificate alone on the same
// key and template (the raw signing ceiling):
//
//	go test -run '^$' -bench 'IssueStore|SignRaw' -benchtime 3s ./ca/
func BenchmarkIssueStore(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			c := newCA(b, be.open(b))
			csr := csrFor(b)
			var n atomic.Int64
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Issue(context.Background(), ca.IssueRequest{DeviceID: fmt.Sprint("bench-", n.Add(1)), CSR: csr}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSignRaw is x509.CreateCertificate alone, 16 callers, with a
// template taken from a certificate Issue made.
func BenchmarkSignRaw(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "x.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c := newCA(b, st)
	h := c.Hierarchy()
	iss, err := c.Issue(context.Background(), ca.IssueRequest{DeviceID: "template", CSR: csrFor(b)})
	if err != nil {
		b.Fatal(err)
	}
	tmpl := *iss.Certificate
	pub := iss.Certificate.PublicKey
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var sn [16]byte
		for pb.Next() {
			t := tmpl
			_, _ = rand.Read(sn[:])
			t.SerialNumber = new(big.Int).SetBytes(sn[:])
			if _, err := x509.CreateCertificate(rand.Reader, &t, h.Intermediate(), pub, h.Signer()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type stepClock struct{ t time.Time }

func (c *stepClock) Now() time.Time { return c.t }

// An unlimited credential is trusted from memory for a second; disabling it
// through the same Accounts takes effect at once, through another (another
// replica) within the second.
func TestCredentialCache(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			st := be.open(t)
			clock := &stepClock{time.Now()}
			a := accounts.NewCredentials(st, clock)
			ctx := t.Context()
			secret, cred, err := a.CreateCredential(ctx, accounts.CredentialSpec{Name: "line"}, pki.Actor{Name: "t"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.AuthenticateCredential(ctx, secret); err != nil {
				t.Fatal(err)
			}
			if err := accounts.NewCredentials(st, clock).DisableCredential(ctx, cred.ID, pki.Actor{Name: "t"}); err != nil {
				t.Fatal(err)
			}
			clock.t = clock.t.Add(time.Second)
			if _, err := a.AuthenticateCredential(ctx, secret); !errors.Is(err, pki.Forbidden) {
				t.Fatalf("disabled elsewhere, a second later: %v, want Forbidden", err)
			}
			secret2, cred2, _ := a.CreateCredential(ctx, accounts.CredentialSpec{Name: "line2"}, pki.Actor{Name: "t"})
			if _, err := a.AuthenticateCredential(ctx, secret2); err != nil {
				t.Fatal(err)
			}
			if err := a.DisableCredential(ctx, cred2.ID, pki.Actor{Name: "t"}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.AuthenticateCredential(ctx, secret2); !errors.Is(err, pki.Forbidden) {
				t.Fatalf("disabled here: %v, want Forbidden at once", err)
			}
		})
	}
}
