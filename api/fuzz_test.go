package api

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/fleetpki/fleetpki/api/wire"
	"github.com/fleetpki/fleetpki/pki"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// FuzzDecodeEnroll feeds arbitrary bodies to the strict decoder of the
// enroll request: it either yields a request or a pki.Invalid error, and
// never panics.
func FuzzDecodeEnroll(f *testing.F) {
	f.Add([]byte(`{"device_id":"sensor-1","csr":"x","metadata":{"lot":"a"}}`))
	f.Add([]byte(`{"device_id":1}`))
	f.Add([]byte(`{"device_id":"a"}{"x":1}`))
	f.Add([]byte(`{"evil":true}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/v1/enroll", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		var v wire.EnrollRequest
		if err := decode(req, &v); err != nil && !errors.Is(err, pki.Invalid) {
			t.Fatalf("decode error of another kind: %v", err)
		}
	})
}
