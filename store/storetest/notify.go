package storetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

// RunNotify checks a backend's revocation notification: open returns a new
// store on one and the same database each time (two processes); a
// revocation committed through the first is told to a listener on the
// second within within, and an idempotent revoke tells nothing new.
func RunNotify(t *testing.T, open func(t *testing.T) store.Backend, within time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := open(t), open(t)
	defer a.Close()
	defer b.Close()
	got := make(chan pki.Serial, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.ListenRevocations(ctx, slog.New(slog.DiscardHandler), func(s pki.Serial) { got <- s })
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond) // let LISTEN take effect

	now := time.Now()
	rec := pki.CertRecord{Serial: "abc123", DeviceID: "d1", Profile: "device", Status: pki.CertValid, NotBefore: now,
		NotAfter: now.Add(time.Hour), DER: []byte{1}, IssuerKeyID: "k", FingerprintSHA256: "f1", CreatedAt: now}
	ev := pki.AuditEvent{Time: now, Action: pki.ActionCertificateIssue, Target: "abc123"}
	if err := a.InsertCertificate(ctx, rec, pki.Device{ID: "d1", CreatedAt: now, UpdatedAt: now}, ev); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := a.RevokeCertificate(ctx, "abc123", pki.ReasonKeyCompromise, time.Now(), pki.AuditEvent{Time: now, Action: pki.ActionCertificateRevoke}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "abc123" {
			t.Fatalf("told %q", s)
		}
		t.Logf("the other store heard of the revocation after %v", time.Since(start))
	case <-time.After(within):
		t.Fatalf("no notification within %v", within)
	}
	// Revoking again changes nothing and tells nothing.
	if _, _, err := a.RevokeCertificate(ctx, "abc123", pki.ReasonKeyCompromise, now, pki.AuditEvent{Time: now}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Fatalf("an idempotent revoke was told: %q", s)
	case <-time.After(1500 * time.Millisecond):
	}
}
