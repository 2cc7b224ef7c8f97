package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/fleetpki/fleetpki/pki"
)

// decode reads a JSON body strictly: JSON content type, no unknown fields,
// one value, within the body limit. Every failure is a pki.Invalid with a
// detail that says what was wrong.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return withCode("unsupported_media_type", pki.Errorf(pki.Invalid, "the body must be application/json"))
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return withCode("body_too_large", pki.Errorf(pki.Invalid, "the body is larger than %d bytes", tooBig.Limit))
		case errors.Is(err, io.EOF):
			return withCode("malformed_json", pki.Errorf(pki.Invalid, "the body is empty"))
		case errors.As(err, &syntax):
			return withCode("malformed_json", pki.Errorf(pki.Invalid, "the body is not valid JSON (at byte %d)", syntax.Offset))
		case errors.As(err, &typ):
			return withCode("malformed_json", pki.Errorf(pki.Invalid, "field %q must be %s", typ.Field, typ.Type))
		default:
			// Unknown fields and truncated JSON land here; the decoder's
			// message names the field and contains no server internals.
			return withCode("malformed_json", pki.Errorf(pki.Invalid, "the body is not acceptable: %s", truncate(err.Error(), 200)))
		}
	}
	if dec.More() {
		return withCode("malformed_json", pki.Errorf(pki.Invalid, "the body has data after its JSON value"))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return withCode("malformed_json", pki.Errorf(pki.Invalid, "the body has data after its JSON value"))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// writeJSON sends v with status, indented for the people who read admin
// answers.
func writeJSON(w http.ResponseWriter, status int, v any) { writeJSONAs(w, status, v, true) }

// writeCompactJSON sends v unindented: enrollment answers go to machines by
// the thousand a second, and indenting 3 KB of PEM costs more than it helps.
func writeCompactJSON(w http.ResponseWriter, status int, v any) { writeJSONAs(w, status, v, false) }

func writeJSONAs(w http.ResponseWriter, status int, v any, indent bool) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(v) // the status is sent; a failed write leaves a truncated body
}
