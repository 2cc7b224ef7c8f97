package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// A logic test of retries and problems against an httptest TLS server; the
// end-to-end path against a real fleetpki is in cmd/fleetpki's tests.
func TestRetriesUnderOneKey(t *testing.T) {
	var calls atomic.Int32
	keys := make(chan string, 10)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys <- r.Header.Get("Idempotency-Key")
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"device_id":"d","serial":"ab"}`))
		}
	}))
	defer srv.Close()
	// httptest's certificate is its own root: pin it.
	sum := sha256.Sum256(srv.Certificate().Raw)
	c, err := New(srv.URL, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Enroll(context.Background(), "fpe_x", EnrollRequest{DeviceID: "d"}, "k-1")
	if err != nil || out.Serial != "ab" || calls.Load() != 3 {
		t.Fatalf("Enroll = %+v, %v after %d calls", out, err, calls.Load())
	}
	close(keys)
	for k := range keys {
		if k != "k-1" {
			t.Fatalf("a retry used idempotency key %q", k)
		}
	}
}

func TestProblemIsFinal(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"status":403,"code":"forbidden","detail":"no"}`))
	}))
	defer srv.Close()
	sum := sha256.Sum256(srv.Certificate().Raw)
	c, _ := New(srv.URL, hex.EncodeToString(sum[:]))
	_, err := c.Enroll(context.Background(), "fpe_x", EnrollRequest{DeviceID: "d"}, "")
	var p *Problem
	if !errors.As(err, &p) || p.Code != "forbidden" || calls.Load() != 1 {
		t.Fatalf("err = %v after %d calls; want one call and a forbidden problem", err, calls.Load())
	}
	// A wrong pin never reaches the handler.
	bad, _ := New(srv.URL, hex.EncodeToString(make([]byte, 32)))
	if _, err := bad.Enroll(context.Background(), "fpe_x", EnrollRequest{DeviceID: "d"}, ""); err == nil || calls.Load() != 1 {
		t.Fatalf("wrong pin: err = %v, calls %d", err, calls.Load())
	}
}
