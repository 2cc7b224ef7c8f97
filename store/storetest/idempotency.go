package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

func testIdempotency(t *testing.T, s store.Store) {
	ctx := context.Background()
	h1, h2 := []byte("request-1"), []byte("request-2")
	claim := func(cred, key string, h []byte, now time.Time) (pki.Idempotency, pki.Serial, error) {
		return s.ClaimIdempotencyKey(ctx, pki.IdempotencyClaim{CredentialID: cred, Key: key, RequestHash: h, Now: now,
			ExpireBefore: now.Add(-24 * time.Hour), AbandonBefore: now.Add(-2 * time.Minute)})
	}
	if st, _, err := claim("c1", "k1", h1, base); err != nil || st != pki.IdempotencyClaimed {
		t.Fatalf("first claim = %v, %v", st, err)
	}
	if st, _, err := claim("c1", "k1", h1, base); err != nil || st != pki.IdempotencyInProgress {
		t.Fatalf("second claim while in progress = %v, %v", st, err)
	}
	if _, _, err := claim("c1", "k1", h2, base); !errors.Is(err, pki.Conflict) {
		t.Fatalf("same key, other request: err = %v, want Conflict", err)
	}
	if st, _, err := claim("c2", "k1", h2, base); err != nil || st != pki.IdempotencyClaimed {
		t.Fatalf("same key of another credential = %v, %v; keys are per credential", st, err)
	}
	if st, _, err := claim("c2", "k1", h2, base.Add(3*time.Minute)); err != nil || st != pki.IdempotencyClaimed {
		t.Fatalf("claim of an abandoned key in progress = %v, %v", st, err)
	}
	if err := s.CompleteIdempotencyKey(ctx, "c1", "k1", "abc"); err != nil {
		t.Fatal(err)
	}
	if st, serial, err := claim("c1", "k1", h1, base.Add(time.Hour)); err != nil || st != pki.IdempotencyDone || serial != "abc" {
		t.Fatalf("claim after completion = %v, %q, %v", st, serial, err)
	}
	if st, _, err := claim("c1", "k1", h2, base.Add(25*time.Hour)); err != nil || st != pki.IdempotencyClaimed {
		t.Fatalf("claim of a lapsed key = %v, %v", st, err)
	}
	if err := s.ReleaseIdempotencyKey(ctx, "c1", "k1"); err != nil {
		t.Fatal(err)
	}
	if st, _, err := claim("c1", "k1", h1, base.Add(25*time.Hour)); err != nil || st != pki.IdempotencyClaimed {
		t.Fatalf("claim after release = %v, %v", st, err)
	}
	if err := s.CompleteIdempotencyKey(ctx, "c9", "nope", "abc"); !errors.Is(err, pki.NotFound) {
		t.Fatalf("complete unknown key: err = %v, want NotFound", err)
	}
	// Concurrent claims of one new key: exactly one wins.
	var mu sync.Mutex
	won := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, err := claim("c3", "race", h1, base)
			if err != nil {
				t.Errorf("claim: %v", err)
				return
			}
			if st == pki.IdempotencyClaimed {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d concurrent claims won, want 1", won)
	}
}
