// Package storetest is the conformance suite every store.Store backend must
// pass. A backend's test calls Run with a function that opens a fresh, empty
// store; the suite never assumes anything a backend does not promise.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// Opener returns a new, empty store; the suite closes it.
type Opener func(t *testing.T) store.Store

// Run runs the whole suite against the backend opened by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"certificate round trip", testCertRoundTrip},
		{"duplicate serial conflicts and writes nothing", testDuplicateSerial},
		{"certificate pagination and filters", testCertPagination},
		{"expiring certificates", testExpiringCertificates},
		{"expiry notices", testExpiryNotices},
		{"device pagination and filters", testDevicePagination},
		{"services and devices", testDeviceKinds},
		{"revoke is idempotent", testRevoke},
		{"concurrent revoke has one winner", testConcurrentRevoke},
		{"revoke device", testRevokeDevice},
		{"list revoked for CRLs", testListRevoked},
		{"concurrent CRL numbers are unique", testCRLNumbers},
		{"audit chain holds under concurrent writers", testAuditChain},
		{"timestamps round trip in UTC", testTimestamps},
		{"users and tokens", testUsers},
		{"credentials", testCredentials},
		{"concurrent use of a one-time credential", testCredentialOneUse},
		{"idempotency keys", testIdempotency},
		{"the stored CRL only moves forward", testCRLStorage},
		{"pre-signed OCSP responses", testOCSPResponses},
		{"OCSP lookups in one read", testOCSPLookup},
		{"web sessions", testWebSessions},
		{"dashboard stats", testStats},
		{"recent audit events by target", testAuditRecent},
		{"bulk revocation", testBulkRevocation},
		{"not found", testNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// base is a fixed time with sub-microsecond digits, to catch precision bugs.
var base = time.Date(2026, 11, 24, 10, 30, 0, 123456789, time.UTC)

type fixture struct {
	t *testing.T
	s store.Store
}

func newCert(deviceID string, at time.Time) pki.CertRecord {
	var b [16]byte
	_, _ = rand.Read(b[:])
	serial := pki.NewSerial(new(big.Int).Add(new(big.Int).SetBytes(b[:]), big.NewInt(1)))
	der := append([]byte("not really DER: "), b[:]...)
	sum := sha256.Sum256(der)
	return pki.CertRecord{
		Serial: serial, DeviceID: deviceID, Profile: "device", Status: pki.CertValid,
		NotBefore: at.Add(-time.Minute), NotAfter: at.Add(365 * 24 * time.Hour), DER: der,
		IssuerKeyID: "aabbcc", FingerprintSHA256: hex.EncodeToString(sum[:]), CreatedAt: at,
	}
}

func (f fixture) issue(deviceID string, at time.Time, meta map[string]string) pki.CertRecord {
	f.t.Helper()
	c := newCert(deviceID, at)
	f.insert(c, meta)
	return c
}

func (f fixture) insert(c pki.CertRecord, meta map[string]string) {
	f.t.Helper()
	err := f.s.InsertCertificate(context.Background(), c,
		pki.Device{ID: c.DeviceID, Status: pki.DeviceActive, Metadata: meta, CreatedAt: c.CreatedAt, UpdatedAt: c.CreatedAt},
		event(pki.ActionCertificateIssue, string(c.Serial), c.CreatedAt))
	if err != nil {
		f.t.Fatalf("InsertCertificate(%s): %v", c.Serial, err)
	}
}

func event(action, target string, at time.Time) pki.AuditEvent {
	return pki.AuditEvent{Time: at, Actor: pki.Actor{Name: "storetest", RequestID: "req-1", RemoteAddr: "127.0.0.1:1"},
		Action: action, Target: target, Details: map[string]string{"k": "v"}}
}

// auditLog returns the whole audit log, verifying its chain.
func auditLog(t *testing.T, s store.Store) []pki.AuditEvent {
	t.Helper()
	var all []pki.AuditEvent
	var prev []byte
	for after := int64(0); ; {
		evs, err := s.ListAudit(context.Background(), after, 7) // a small page to cross page boundaries
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(evs) == 0 {
			return all
		}
		for i, e := range evs {
			if e.Seq != after+int64(i)+1 {
				t.Fatalf("audit seq %d follows %d", e.Seq, after+int64(i))
			}
		}
		if prev, err = pki.VerifyChain(prev, evs); err != nil {
			t.Fatalf("audit chain: %v", err)
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
}

func equalCert(t *testing.T, got, want pki.CertRecord) {
	t.Helper()
	norm := func(c pki.CertRecord) string {
		r := "nil"
		if c.RevokedAt != nil {
			r = c.RevokedAt.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
		}
		return fmt.Sprintf("%s|%s|%s|%s|%s|%s|%x|%s|%s|%s|%d|%s", c.Serial, c.DeviceID, c.Profile, c.Status,
			ts(c.NotBefore), ts(c.NotAfter), c.DER, c.IssuerKeyID, c.FingerprintSHA256, r, c.Reason, ts(c.CreatedAt))
	}
	if g, w := norm(got), norm(want); g != w {
		t.Fatalf("certificate differs:\n got %s\nwant %s", g, w)
	}
	for _, tm := range []time.Time{got.NotBefore, got.NotAfter, got.CreatedAt} {
		if tm.Location() != time.UTC {
			t.Fatalf("time %v is not in UTC", tm)
		}
	}
}

func ts(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) }
