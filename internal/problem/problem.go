// Package problem is the one table from fleetpki's error kinds (package
// pki) to HTTP answers, shared by the REST API (which renders RFC 9457
// problems) and the admin UI (which renders pages), so that the same
// failure gets the same status everywhere.
package problem

import (
	"net/http"

	"github.com/fleetpki/fleetpki/pki"
)

// Answer is how an error kind is answered over HTTP.
type Answer struct {
	Status int
	Code   string // stable, machine-readable
	Title  string
}

var kinds = map[*pki.Kind]Answer{
	pki.Invalid:         {http.StatusBadRequest, "invalid_request", "The request is invalid"},
	pki.NotFound:        {http.StatusNotFound, "not_found", "Not found"},
	pki.Conflict:        {http.StatusConflict, "conflict", "Conflict with the current state"},
	pki.Unauthenticated: {http.StatusUnauthorized, "unauthenticated", "Authentication required"},
	pki.Forbidden:       {http.StatusForbidden, "forbidden", "Not allowed"},
	pki.Unavailable:     {http.StatusServiceUnavailable, "unavailable", "Temporarily unavailable"},
}

// Internal is the answer to an error without a kind: our own fault.
var Internal = Answer{http.StatusInternalServerError, "internal", "Internal error"}

// For returns the answer to err and whether err carries a kind (false: an
// internal failure, whose cause must be logged, never shown).
func For(err error) (Answer, bool) {
	if k := pki.KindOf(err); k != nil {
		return kinds[k], true
	}
	return Internal, false
}

// RetryAfter is the Retry-After value (seconds) sent with a 503.
const RetryAfter = "5"
