package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/fleetpki/fleetpki/api/wire"
	"github.com/fleetpki/fleetpki/pki"
)

// Problem is an RFC 9457 problem details object (see package wire).
type Problem = wire.Problem

const problemBase = "https://fleetpki.dev/problems/"

// kindProblems is the one table from domain error kinds to HTTP problems.
var kindProblems = map[*pki.Kind]struct {
	status int
	code   string
	title  string
}{
	pki.Invalid:         {http.StatusBadRequest, "invalid_request", "The request is invalid"},
	pki.NotFound:        {http.StatusNotFound, "not_found", "Not found"},
	pki.Conflict:        {http.StatusConflict, "conflict", "Conflict with the current state"},
	pki.Unauthenticated: {http.StatusUnauthorized, "unauthenticated", "Authentication required"},
	pki.Forbidden:       {http.StatusForbidden, "forbidden", "Not allowed"},
	pki.Unavailable:     {http.StatusServiceUnavailable, "unavailable", "Temporarily unavailable"},
}

// problemFor maps an error to the problem sent to the client. An error
// without a kind is our own fault: a 500 whose detail says nothing about the cause.
func problemFor(err error) Problem {
	if k := pki.KindOf(err); k != nil {
		p := kindProblems[k]
		return Problem{Type: problemBase + p.code, Title: p.title, Status: p.status, Detail: pki.Message(err), Code: p.code}
	}
	return Problem{Type: problemBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError,
		Detail: "the server failed; the request id identifies the failure in its log", Code: "internal"}
}

// writeProblem sends p; code, when set, overrides the kind's generic code.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.RequestID = middleware.GetReqID(r.Context())
	if p.Type == "" {
		p.Type = problemBase + p.Code
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// errorWriter sends errors as problems and logs them: our own faults at
// Error with their cause, the client's at Debug (bad input is not news).
type errorWriter struct{ log *slog.Logger }

func (e errorWriter) send(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	var pe *problemError
	if errors.As(err, &pe) {
		p.Code, p.Type = pe.code, problemBase+pe.code
	}
	level := slog.LevelDebug
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away (closed the connection): nobody reads the
		// answer, and it is not our fault.
		level = slog.LevelDebug
	case p.Status >= 500:
		level = slog.LevelError
	}
	e.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", p.Status, "code", p.Code, "request_id", middleware.GetReqID(r.Context()), "err", err)
	writeProblem(w, r, p)
}

// problemError gives a domain error a more specific code than its kind's.
type problemError struct {
	code string
	err  error
}

func (e *problemError) Error() string { return e.err.Error() }
func (e *problemError) Unwrap() error { return e.err }

func withCode(code string, err error) error { return &problemError{code: code, err: err} }
