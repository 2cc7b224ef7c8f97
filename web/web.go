// Package web is fleetpki's admin UI: server-rendered pages (html/template,
// embedded assets, no script at all) for operators who must find and revoke
// leaked devices fast and without mistakes. Every state change is a POST
// behind a session (kept in the store), Go's cross-origin protection and a
// per-session CSRF token; roles are enforced by one route table. The package
// reads and writes only through the domain (package ca).
package web

import (
	"context"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/audit"
	"github.com/fleetpki/fleetpki/internal/textcheck"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// Users signs users in and manages them.
type Users interface {
	CheckPassword(ctx context.Context, name, password string) (pki.User, error)
	CreateUser(ctx context.Context, name string, role pki.Role, password string, actor pki.Actor) (pki.User, error)
	SetUserDisabled(ctx context.Context, name string, disabled bool, actor pki.Actor) error
	ChangePassword(ctx context.Context, name, current, next string, actor pki.Actor) error
	List(ctx context.Context) ([]pki.User, error)
}

// Credentials manages enrollment credentials.
type Credentials interface {
	CreateCredential(ctx context.Context, spec accounts.CredentialSpec, actor pki.Actor) (string, pki.Credential, error)
	ListCredentials(ctx context.Context) ([]pki.Credential, error)
	DisableCredential(ctx context.Context, id string, actor pki.Actor) error
}

// Directory reads devices, certificates and counts.
type Directory interface {
	Certificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
	Certificates(ctx context.Context, f pki.CertFilter) (pki.Page[pki.CertRecord], error)
	Device(ctx context.Context, id string) (pki.Device, error)
	Devices(ctx context.Context, f pki.DeviceFilter) (pki.Page[pki.Device], error)
	Stats(ctx context.Context, days int) (pki.Stats, error)
}

// AuditLog reads and verifies the audit log.
type AuditLog interface {
	VerifyRecent(ctx context.Context) (audit.Check, error)
	Recent(ctx context.Context, targets []string, limit int) ([]pki.AuditEvent, error)
}

// Revoker revokes certificates and devices.
type Revoker interface {
	Revoke(ctx context.Context, serial pki.Serial, reason pki.RevocationReason, actor pki.Actor) (pki.CertRecord, error)
	RevokeDevice(ctx context.Context, deviceID string, reason pki.RevocationReason, actor pki.Actor) ([]pki.CertRecord, error)
	PreviewMatching(ctx context.Context, sel pki.Selector) (pki.MatchSet, error)
	RevokeMatching(ctx context.Context, sel pki.Selector, expectSetHash string, reason pki.RevocationReason, actor pki.Actor) (pki.RevocationJob, error)
}

// Sessions keeps sign-ins.
type Sessions interface {
	Create(ctx context.Context, u pki.User, actor pki.Actor) (id, csrf string, err error)
	Lookup(ctx context.Context, id string) (pki.User, pki.WebSession, error)
	Delete(ctx context.Context, id string, actor pki.Actor) error
	EndOthers(ctx context.Context, userName, keep string) error
}

// OCSPAnswer is what the OCSP responder answers about a certificate.
type OCSPAnswer struct {
	Status     string // good, revoked, unknown
	RevokedAt  time.Time
	Reason     string
	ThisUpdate time.Time
	NextUpdate time.Time
}

// AskOCSP returns the Config.OCSP of a UI that asks the public OCSP
// endpoint at url (as devices and brokers see it) about certificates of
// issuer, for the certificate page.
func AskOCSP(url string, issuer *x509.Certificate) func(context.Context, *x509.Certificate) (OCSPAnswer, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	return func(ctx context.Context, cert *x509.Certificate) (OCSPAnswer, error) {
		r, err := revocation.AskOCSP(ctx, client, url, cert, issuer, time.Now())
		if err != nil && !errors.Is(err, revocation.ErrUnknown) {
			return OCSPAnswer{}, err
		}
		a := OCSPAnswer{Status: "unknown", ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
		switch r.Status {
		case ocsp.Good:
			a.Status = "good"
		case ocsp.Revoked:
			a.Status, a.RevokedAt, a.Reason = "revoked", r.RevokedAt, pki.RevocationReason(r.RevocationReason).String()
		}
		return a, nil
	}
}

// Health is what the dashboard shows of the CA's publication services.
type Health struct {
	CRLNumber     int64
	CRLThisUpdate time.Time
	CRLNextUpdate time.Time
	OCSPSignerEnd time.Time
	// Warnings are for operators' eyes, e.g. root-signed artefacts that
	// will soon expire.
	Warnings []string
}

// Config wires the UI to the domain.
type Config struct {
	Users       Users
	Credentials Credentials
	Directory   Directory
	Audit       AuditLog
	Revoker     Revoker
	Sessions    Sessions
	// OCSP asks the real responder about a certificate (optional).
	OCSP func(ctx context.Context, cert *x509.Certificate) (OCSPAnswer, error)
	// Health reports the CRL and OCSP signer state (optional).
	Health func(ctx context.Context) (Health, error)
	Clock  pki.Clock
	Logger *slog.Logger
}

//go:embed templates/*.html static
var assets embed.FS

// UI is the admin web UI.
type UI struct {
	cfg      Config
	log      *slog.Logger
	pages    map[string]*template.Template
	throttle *throttle
}

// New returns the UI's handler; mount it at the root of the HTTPS listener,
// with /api left to the REST API.
func New(cfg Config) (http.Handler, error) {
	if cfg.Users == nil || cfg.Credentials == nil || cfg.Directory == nil || cfg.Audit == nil || cfg.Revoker == nil || cfg.Sessions == nil {
		return nil, errors.New("web: Users, Credentials, Directory, Audit, Revoker and Sessions are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, log: cfg.Logger, pages: pages, throttle: newThrottle(cfg.Clock)}
	return u.routes(), nil
}

// route is one page and the least role it needs; pki.Role("") is public.
// The table is the single source of truth for authorization: a test walks
// chi's routes and fails on any route missing from it.
type route struct {
	method, pattern string
	role            pki.Role
	handler         func(u *UI, w http.ResponseWriter, r *http.Request)
}

var routes = []route{
	{http.MethodGet, "/", pki.RoleAuditor, (*UI).dashboard},
	{http.MethodGet, "/devices", pki.RoleAuditor, (*UI).devices},
	{http.MethodGet, "/services", pki.RoleAuditor, (*UI).services},
	{http.MethodGet, "/expiring", pki.RoleAuditor, (*UI).expiring},
	{http.MethodGet, "/devices/{id}", pki.RoleAuditor, (*UI).device},
	{http.MethodGet, "/devices/{id}/revoke", pki.RoleOperator, (*UI).revokeDeviceForm},
	{http.MethodPost, "/devices/{id}/revoke", pki.RoleOperator, (*UI).revokeDevice},
	{http.MethodGet, "/certificates/{serial}", pki.RoleAuditor, (*UI).certificate},
	{http.MethodGet, "/certificates/{serial}/pem", pki.RoleAuditor, (*UI).certificatePEM},
	{http.MethodGet, "/certificates/{serial}/revoke", pki.RoleOperator, (*UI).revokeCertForm},
	{http.MethodPost, "/certificates/{serial}/revoke", pki.RoleOperator, (*UI).revokeCert},
	{http.MethodGet, "/bulk-revoke", pki.RoleOperator, (*UI).bulkForm},
	{http.MethodPost, "/bulk-revoke", pki.RoleOperator, (*UI).bulkRevoke},
	{http.MethodGet, "/credentials", pki.RoleAdmin, (*UI).credentials},
	{http.MethodPost, "/credentials", pki.RoleAdmin, (*UI).createCredential},
	{http.MethodPost, "/credentials/{id}/disable", pki.RoleAdmin, (*UI).disableCredential},
	{http.MethodGet, "/users", pki.RoleAdmin, (*UI).users},
	{http.MethodPost, "/users", pki.RoleAdmin, (*UI).createUser},
	{http.MethodPost, "/users/{name}/disable", pki.RoleAdmin, (*UI).disableUser},
	{http.MethodPost, "/users/{name}/enable", pki.RoleAdmin, (*UI).enableUser},
	{http.MethodGet, "/account", pki.RoleAuditor, (*UI).account},
	{http.MethodPost, "/account/password", pki.RoleAuditor, (*UI).changePassword},
	{http.MethodGet, "/audit", pki.RoleAuditor, (*UI).audit},
	{http.MethodPost, "/logout", pki.RoleAuditor, (*UI).logout},
}

// Public routes: sign-in and the stylesheet.
var publicRoutes = []route{
	{http.MethodGet, "/login", "", (*UI).loginForm},
	{http.MethodPost, "/login", "", (*UI).login},
}

func (u *UI) routes() http.Handler {
	r := chi.NewRouter()
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, http.StatusForbidden, "This request came from another site and was refused.")
	}))
	r.Use(middleware.RequestID, u.recoverer, securityHeaders, cop.Handler, limitBody, middleware.GetHead,
		textcheck.Middleware(func(w http.ResponseWriter, r *http.Request, what string) {
			u.fail(w, r, http.StatusBadRequest, "The request was refused: "+textcheck.Message(what)+".")
		}))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, http.StatusMethodNotAllowed, "This page does not accept "+r.Method+".")
	})
	static, _ := fs.Sub(assets, "static")
	r.Method(http.MethodGet, "/static/*", http.StripPrefix("/static/", staticFiles(static)))
	for _, rt := range publicRoutes {
		h := rt.handler
		r.MethodFunc(rt.method, rt.pattern, func(w http.ResponseWriter, r *http.Request) { h(u, w, r) })
	}
	for _, rt := range routes {
		r.Method(rt.method, rt.pattern, u.authorize(rt))
	}
	return r
}

// staticFiles serves the embedded assets with a day of caching: files
// only, never a directory listing.
func staticFiles(fsys fs.FS) http.Handler {
	h := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if fi, err := fs.Stat(fsys, name); name == "" || err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		h.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows nothing but the UI's own stylesheet and
// forms: no script runs on these pages at all.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// maxForm bounds a form body: the largest form (a credential) is tiny.
const maxForm = 16 << 10

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		next.ServeHTTP(w, r)
	})
}

func (u *UI) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				u.log.ErrorContext(r.Context(), "web handler panicked", "panic", fmt.Sprint(v), "path", r.URL.Path)
				u.fail(w, r, http.StatusInternalServerError, "Something went wrong on our side.")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// session cookie names: __Host- binds them to this origin, Secure, path /.
const (
	sessionCookie = "__Host-fleetpki-session"
	loginCookie   = "__Host-fleetpki-login"
)

type ctxKey int

const (
	userKey ctxKey = iota
	sessionKey
)

// authorize admits a signed-in user with at least the route's role and, on
// a POST, the session's CSRF token.
func (u *UI) authorize(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie(sessionCookie)
		id := ""
		if c != nil {
			id = c.Value
		}
		user, ws, err := u.cfg.Sessions.Lookup(r.Context(), id)
		if err != nil {
			if !errors.Is(err, pki.Unauthenticated) {
				u.serverError(w, r, err)
				return
			}
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+safeNext(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			u.fail(w, r, http.StatusUnauthorized, "Please sign in again: your session has ended.")
			return
		}
		ctx := context.WithValue(context.WithValue(r.Context(), userKey, user), sessionKey, ws)
		r = r.WithContext(ctx)
		if !user.Role.Allows(rt.role) {
			u.fail(w, r, http.StatusForbidden, "Your role ("+string(user.Role)+") may not do this.")
			return
		}
		if r.Method == http.MethodPost && !validCSRF(r, ws.CSRF) {
			u.fail(w, r, http.StatusForbidden, "This form has expired or was not sent from fleetpki. Go back, reload and try again.")
			return
		}
		rt.handler(u, w, r)
	})
}

func currentUser(r *http.Request) pki.User {
	v, _ := r.Context().Value(userKey).(pki.User)
	return v
}

func currentSession(r *http.Request) pki.WebSession {
	v, _ := r.Context().Value(sessionKey).(pki.WebSession)
	return v
}

// actor names who did something, for the audit log.
func actor(r *http.Request) pki.Actor {
	return pki.Actor{Name: currentUser(r).Name, RemoteAddr: r.RemoteAddr, RequestID: middleware.GetReqID(r.Context())}
}

// Route is one route the UI serves: a method and a chi pattern.
type Route struct{ Method, Pattern string }

// Routes lists every route the UI serves, walked from its router, so that
// tests from outside (a running server's hostile-input suite) cover each.
func Routes() []Route {
	var out []Route
	_ = chi.Walk((&UI{}).routes().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, Route{method, route})
		return nil
	})
	return out
}
