package public

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/ca"
)

// newTestPublic returns the public handler over a fresh CA, with ready as
// the readiness check.
func newTestPublic(t testing.TB, ready func(context.Context) error) http.Handler {
	t.Helper()
	h, err := ca.Init(context.Background(), ca.InitOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{ChainPEM: h.ChainPEM(), Root: h.Root(), Intermediate: h.Intermediate(), Ready: ready,
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
}

func TestPublicHandler(t *testing.T) {
	dbDown := true
	handler := newTestPublic(t, func(context.Context) error {
		if dbDown {
			return errors.New("connection refused")
		}
		return nil
	})
	tests := []struct {
		name     string
		method   string
		path     string
		wantCode int
		wantBody string
	}{
		{"503/readyz while the database is down", http.MethodGet, "/readyz", http.StatusServiceUnavailable, "not ready"},
		{"200/healthz while the database is down", http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{"200/HEAD of a certificate", http.MethodHead, "/ca/root.crt", http.StatusOK, ""},
		{"404/unknown path", http.MethodGet, "/nope", http.StatusNotFound, ""},
		{"405/POST to a certificate", http.MethodPost, "/ca.pem", http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, rec.Code, rec.Body.String(), tt.wantCode, tt.wantBody)
			}
			if strings.Contains(rec.Body.String(), "connection refused") {
				t.Error("the internal error reached the client")
			}
		})
	}
	dbDown = false
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/readyz with the database up = %d, want 200", rec.Code)
	}

	// Unmatched paths share one label, so that scanners cannot create series.
	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`fleetpki_http_requests_total{code="200",route="/ca/root.crt"} 1`,
		`fleetpki_http_requests_total{code="200",route="/healthz"} 1`,
		`fleetpki_http_requests_total{code="200",route="/readyz"} 1`,
		`fleetpki_http_requests_total{code="404",route="unmatched"} 1`,
		`fleetpki_http_requests_total{code="405",route="unmatched"} 1`,
		`fleetpki_http_requests_total{code="503",route="/readyz"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(rec.Body.String(), "/nope") {
		t.Error("/metrics has a series for a raw unmatched path")
	}
}

// BenchmarkPublicCAChain measures the cost of serving /ca.pem through the
// router and the metrics middleware, the path every enrolling client takes.
func BenchmarkPublicCAChain(b *testing.B) {
	handler := newTestPublic(b, func(context.Context) error { return nil })
	req := httptest.NewRequest(http.MethodGet, "/ca.pem", nil)
	b.ReportAllocs()
	for b.Loop() {
		handler.ServeHTTP(httptest.NewRecorder(), req)
	}
}
