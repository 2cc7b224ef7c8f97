package crl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/fleetpki/fleetpki/pki"
)

// maxAge is how long HTTP caches may keep a CRL: short, because a new CRL
// follows every revocation within seconds, and brokers should see it.
const maxAge = 60

// Handler serves the latest complete CRL: DER, or PEM when asPEM is true.
func (u *Updater) Handler(asPEM bool) http.Handler { return u.handler(u.Latest, asPEM) }

// DeltaHandler serves the latest delta CRL (DER).
func (u *Updater) DeltaHandler() http.Handler { return u.handler(u.LatestDelta, false) }

func (u *Updater) handler(latest func(context.Context) (pki.CRL, error), asPEM bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := latest(r.Context())
		if err != nil {
			if !errors.Is(err, pki.NotFound) {
				u.cfg.Logger.ErrorContext(r.Context(), "CRL unavailable", "err", err)
			}
			w.Header().Set("Retry-After", "5")
			http.Error(w, "no current CRL; retry shortly", http.StatusServiceUnavailable)
			return
		}
		Serve(w, r, c, asPEM)
	})
}

// Serve writes a CRL with the caching headers of RFC 5019's spirit: an
// ETag, Last-Modified (thisUpdate), Expires (nextUpdate) and a short
// max-age, answering 304 to a matching If-None-Match.
func Serve(w http.ResponseWriter, r *http.Request, c pki.CRL, asPEM bool) {
	body, ctype := c.DER, "application/pkix-crl"
	if asPEM {
		body, ctype = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c.DER}), "application/x-pem-file"
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", etag)
	h.Set("Last-Modified", c.ThisUpdate.UTC().Format(http.TimeFormat))
	h.Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(maxAge)+", no-transform")
	if m := r.Header.Get("If-None-Match"); m != "" && strings.Contains(m, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
