package web

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/internal/problem"
	"github.com/fleetpki/fleetpki/pki"
)

var funcs = template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"datep": func(t *time.Time) string {
		if t == nil {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"status": func(c pki.CertRecord, now time.Time) string { return string(c.StatusAt(now)) },
	"allows": func(u pki.User, role string) bool { return u.Role.Allows(pki.Role(role)) },
}

// parsePages parses each page together with the layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := fs.ReadFile(assets, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		body, err := fs.ReadFile(assets, n)
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout").Funcs(funcs).Parse(string(layout))
		if err == nil {
			_, err = t.Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a page: the layout around the named page's content, with
// the signed-in user and the CSRF token every form carries.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any) {
	t, ok := u.pages[page]
	if !ok {
		u.log.ErrorContext(r.Context(), "no such web template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if data == nil {
		data = map[string]any{}
	}
	data["User"] = currentUser(r)
	data["CSRF"] = currentSession(r).CSRF
	data["Page"] = page
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		u.log.ErrorContext(r.Context(), "web template failed", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders an error page with a message meant for the operator.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	u.render(w, r, status, "error", map[string]any{"Status": status, "StatusText": http.StatusText(status), "Message": msg})
}

func (u *UI) serverError(w http.ResponseWriter, r *http.Request, err error) {
	u.log.ErrorContext(r.Context(), "web request failed", "path", r.URL.Path, "err", err)
	u.fail(w, r, http.StatusInternalServerError, "Something went wrong on our side; the details are in the server log.")
}

// domainError answers an error through the kinds' one table (package
// problem, shared with the API): a page with the kind's status and the
// domain's caller-safe message; an error without a kind is our fault (500,
// logged).
func (u *UI) domainError(w http.ResponseWriter, r *http.Request, err error) {
	a, known := problem.For(err)
	if !known {
		u.serverError(w, r, err)
		return
	}
	if a.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", problem.RetryAfter)
	}
	msg := pki.Message(err)
	if msg == "" {
		msg = a.Title + "."
	}
	u.fail(w, r, a.Status, msg)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func keyAlgorithm(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

func ekuNames(c *x509.Certificate) string {
	var out []string
	for _, e := range c.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		default:
			out = append(out, fmt.Sprint(e))
		}
	}
	return strings.Join(out, ", ")
}

// chart is the dashboard's bar chart of enrollments per day, drawn as
// inline SVG on the server (no script).
type chart struct {
	Bars          []bar
	Max           int64
	Width, Height int
}

type bar struct {
	X, Y, W, H int
	Label      string
	Count      int64
}

func newChart(days []pki.DayCount) chart {
	c := chart{Width: 700, Height: 160}
	for _, d := range days {
		c.Max = max(c.Max, d.Count)
	}
	if len(days) == 0 {
		return c
	}
	slot := c.Width / len(days)
	for i, d := range days {
		h := 0
		if c.Max > 0 {
			h = int(d.Count * int64(c.Height-30) / c.Max)
		}
		c.Bars = append(c.Bars, bar{X: i*slot + 4, W: slot - 8, H: h, Y: c.Height - 20 - h, Label: d.Day.Format("01-02"), Count: d.Count})
	}
	return c
}
