package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

func testCRLStorage(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.LatestCRL(ctx, "aabbcc"); !errors.Is(err, pki.NotFound) {
		t.Fatalf("LatestCRL before any: err = %v, want NotFound", err)
	}
	c5 := pki.CRL{IssuerKeyID: "aabbcc", Number: 5, DER: []byte("five"), ThisUpdate: base, NextUpdate: base.Add(7 * 24 * time.Hour)}
	if saved, err := s.SaveCRL(ctx, c5); err != nil || !saved {
		t.Fatalf("SaveCRL(5) = %v, %v", saved, err)
	}
	older := c5
	older.Number, older.DER = 4, []byte("four")
	if saved, err := s.SaveCRL(ctx, older); err != nil || saved {
		t.Fatalf("SaveCRL(4) after 5 = %v, %v; want not saved", saved, err)
	}
	got, err := s.LatestCRL(ctx, "aabbcc")
	if err != nil || got.Number != 5 || string(got.DER) != "five" || !got.ThisUpdate.Equal(base.Truncate(time.Microsecond)) {
		t.Fatalf("LatestCRL = %+v, %v", got, err)
	}
	c6 := c5
	c6.Number, c6.DER = 6, []byte("six")
	if saved, err := s.SaveCRL(ctx, c6); err != nil || !saved {
		t.Fatalf("SaveCRL(6) = %v, %v", saved, err)
	}
	if got, _ := s.LatestCRL(ctx, "aabbcc"); got.Number != 6 {
		t.Fatalf("latest number %d, want 6", got.Number)
	}
	if n, err := s.LatestCRLNumber(ctx, "aabbcc"); err != nil || n != 6 {
		t.Fatalf("LatestCRLNumber = %d, %v; want 6", n, err)
	}
	if n, err := s.LatestCRLNumber(ctx, "none"); err != nil || n != 0 {
		t.Fatalf("LatestCRLNumber of an issuer without CRLs = %d, %v; want 0", n, err)
	}
}
