package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/fleetpki/fleetpki/api/wire"
	"github.com/fleetpki/fleetpki/internal/problem"
	"github.com/fleetpki/fleetpki/pki"
)

// Problem is an RFC 9457 problem details object (see package wire).
type Problem = wire.Problem

const problemBase = "https://fleetpki.dev/problems/"

// problemFor maps an error to the problem sent to the client (through the
// table of package problem, which the admin UI shares). An error without a
// kind is our own fault: a 500 whose detail says nothing about the cause.
func problemFor(err error) Problem {
	a, known := problem.For(err)
	if !known {
		return Problem{Type: problemBase + a.Code, Title: a.Title, Status: a.Status,
			Detail: "the server failed; the request id identifies the failure in its log", Code: a.Code}
	}
	return Problem{Type: problemBase + a.Code, Title: a.Title, Status: a.Status, Detail: pki.Message(err), Code: a.Code}
}

// writeProblem sends p; code, when set, overrides the kind's generic code.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.RequestID = middleware.GetReqID(r.Context())
	if p.Type == "" {
		p.Type = problemBase + p.Code
	}
	if p.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", problem.RetryAfter)
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
