// Package textcheck refuses, at the edge of every HTTP listener, text that
// fleetpki cannot store: NUL characters and invalid UTF-8 in a request's
// path, query, form or JSON body. PostgreSQL rejects both in text columns
// (with an error a handler would turn into a 500) while SQLite stores them,
// so checking once here gives one clear 400 on both stores, before any
// handler or query runs.
package textcheck

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Valid reports whether s is valid UTF-8 without NUL characters.
func Valid(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// maxBody bounds what Check reads of a body; larger bodies are left to the
// handler's own limit (which refuses them).
const maxBody = 1 << 20

// Check returns a short description of the first part of r that is not
// valid text ("" when all are), reading a form or JSON body and putting
// it back for the handler.
func Check(r *http.Request) string {
	if !Valid(r.URL.Path) {
		return "the path"
	}
	if r.URL.RawQuery != "" {
		q, _ := url.ParseQuery(r.URL.RawQuery) // a malformed pair is dropped, as Query() does
		for k, vs := range q {
			if !Valid(k) {
				return "a query parameter name"
			}
			for _, v := range vs {
				if !Valid(v) {
					return "query parameter " + printable(k)
				}
			}
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return ""
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	kind := ""
	switch {
	case mt == "application/x-www-form-urlencoded":
		kind = "form"
	case mt == "application/json" || strings.HasSuffix(mt, "+json"), mt == "" && r.Method != http.MethodGet:
		kind = "json"
	default:
		return "" // binary bodies (OCSP, EST) are parsed, not stored as text
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	// The handler reads the same bytes, then whatever error reading gave.
	rest := io.Reader(r.Body)
	if err != nil {
		rest = errReader{err}
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(b), rest), r.Body}
	if len(b) > maxBody {
		return ""
	}
	switch kind {
	case "form":
		q, _ := url.ParseQuery(string(b))
		for k, vs := range q {
			for _, v := range append(vs, k) {
				if !Valid(v) {
					return "form field " + printable(k)
				}
			}
		}
	case "json":
		if !ValidJSON(b) {
			return "the JSON body"
		}
	}
	return ""
}

// ValidJSON reports whether a JSON text is valid UTF-8 and has no NUL, raw
// or escaped as \u0000 (which a decoder turns into a NUL in a string).
// It does not check the JSON syntax: the handler's decoder does.
func ValidJSON(b []byte) bool {
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			continue
		}
		if b[i+1] == 'u' && i+5 < len(b) && string(b[i+2:i+6]) == "0000" {
			return false
		}
		i++ // skip the escaped character, so that \\u0000 is text
	}
	return true
}

// Middleware refuses requests Check finds fault with through reject, which
// writes the listener's kind of 400 answer.
func Middleware(reject func(w http.ResponseWriter, r *http.Request, what string)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if what := Check(r); what != "" {
				reject(w, r, what)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Message is the detail a 400 answer gives for what Check reported.
func Message(what string) string {
	return what + " holds a NUL character or invalid UTF-8"
}

// printable keeps a (possibly bad) field name safe to echo.
func printable(s string) string {
	if Valid(s) && len(s) <= 64 {
		return `"` + s + `"`
	}
	return "(unprintable)"
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }
