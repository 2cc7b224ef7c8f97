package pki

import (
	"errors"
	"fmt"
)

// Kind classifies an error so that callers (the API's problem table, the OCSP
// responder, the CLI) can react without parsing messages. Kinds are themselves
// errors: test with errors.Is(err, pki.NotFound).
type Kind struct{ name string }

func (k *Kind) Error() string { return k.name }

// Error kinds. Their set is closed: every error a domain operation returns to a
// caller is one of these, or an unexpected internal failure.
var (
	// Invalid: the caller's input is malformed or violates a policy.
	Invalid = &Kind{"invalid"}
	// NotFound: the named object does not exist.
	NotFound = &Kind{"not found"}
	// Conflict: the request contradicts the current state (duplicate, reuse).
	Conflict = &Kind{"conflict"}
	// Unauthenticated: the caller's credentials are missing or wrong.
	Unauthenticated = &Kind{"unauthenticated"}
	// Forbidden: the caller is known but may not do this.
	Forbidden = &Kind{"forbidden"}
	// Unavailable: a dependency (database, signer) cannot serve now; retrying may help.
	Unavailable = &Kind{"unavailable"}
)

// Error is a domain error of a given Kind with a message that is safe to show
// to the caller. Err, if set, is the internal cause: log it, never show it.
type Error struct {
	Kind *Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind.name, e.Msg, e.Err)
	}
	return e.Kind.name + ": " + e.Msg
}

// Unwrap exposes both the kind and the cause to errors.Is / errors.As.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// Errorf makes an Error of kind k with a caller-safe message.
func Errorf(k *Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap makes an Error of kind k with a caller-safe message and an internal cause.
func Wrap(k *Kind, cause error, msg string) error {
	return &Error{Kind: k, Msg: msg, Err: cause}
}

// KindOf returns the kind of err, or nil when err carries none (an internal failure).
func KindOf(err error) *Kind {
	for _, k := range []*Kind{Invalid, NotFound, Conflict, Unauthenticated, Forbidden, Unavailable} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// Message returns the caller-safe message of a domain error, or "" when err is
// not one (its text may leak internals and must not be shown).
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return ""
}
