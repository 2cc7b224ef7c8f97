// Package api is fleetpki's REST API (v1): enrollment for factory lines and
// administration for operators. Handlers are thin: authenticate, decode
// strictly, call the domain (package ca), render JSON. Every failure is an
// RFC 9457 problem with a stable code; bad input is a 4xx and changes
// nothing. The package never touches the store: it reads and writes through
// the small interfaces declared here.
package api

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/textcheck"
	"github.com/fleetpki/fleetpki/pki"
)

// Enroller issues certificates to enrollment credentials and to renewing devices.
type Enroller interface {
	EnrollIdempotent(ctx context.Context, cred pki.Credential, idempotencyKey string, req ca.IssueRequest) (*ca.Issued, error)
}

// Revoker revokes certificates and renews them for devices.
type Revoker interface {
	Renew(ctx context.Context, current *x509.Certificate, csr []byte, actor pki.Actor) (*ca.Issued, error)
	Revoke(ctx context.Context, serial pki.Serial, reason pki.RevocationReason, actor pki.Actor) (pki.CertRecord, error)
	RevokeDevice(ctx context.Context, deviceID string, reason pki.RevocationReason, actor pki.Actor) ([]pki.CertRecord, error)
	PreviewMatching(ctx context.Context, sel pki.Selector) (pki.MatchSet, error)
	RevokeMatching(ctx context.Context, sel pki.Selector, expectSetHash string, reason pki.RevocationReason, actor pki.Actor) (pki.RevocationJob, error)
	Job(ctx context.Context, id string) (pki.RevocationJob, error)
}

// Tokens authenticates admin API tokens.
type Tokens interface {
	AuthenticateToken(ctx context.Context, secret string) (pki.User, error)
}

// Credentials authenticates and manages enrollment credentials.
type Credentials interface {
	AuthenticateCredential(ctx context.Context, secret string) (pki.Credential, error)
	CreateCredential(ctx context.Context, spec accounts.CredentialSpec, actor pki.Actor) (string, pki.Credential, error)
	ListCredentials(ctx context.Context) ([]pki.Credential, error)
	DisableCredential(ctx context.Context, id string, actor pki.Actor) error
}

// ClientCerts verifies certificates clients present over TLS (brokers on
// the revocation event stream).
type ClientCerts interface {
	VerifyClient(ctx context.Context, cert *x509.Certificate) (pki.CertRecord, error)
}

// brokerProfile is the profile of brokers' certificates (package ca).
const brokerProfile = "broker"

// Directory reads devices and certificates.
type Directory interface {
	Certificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
	Certificates(ctx context.Context, f pki.CertFilter) (pki.Page[pki.CertRecord], error)
	Device(ctx context.Context, id string) (pki.Device, error)
	Devices(ctx context.Context, f pki.DeviceFilter) (pki.Page[pki.Device], error)
}

// AuditLog lists the audit log.
type AuditLog interface {
	List(ctx context.Context, afterSeq int64, limit int) ([]pki.AuditEvent, error)
}

// Config wires the API to the domain.
type Config struct {
	Enroller    Enroller
	Revoker     Revoker
	Tokens      Tokens
	Credentials Credentials
	// Clients, when set, lets brokers authenticate with their certificates.
	Clients   ClientCerts
	Directory Directory
	Audit     AuditLog
	// PublicURL is the base of the OCSP and CRL URLs reported to enrolling clients.
	PublicURL string
	// CAChain (issuing CA first, root last) is what EST's /cacerts returns.
	CAChain []*x509.Certificate
	// EnrollRate limits enrollments per credential (requests per second,
	// token bucket with EnrollBurst tokens); 0 means unlimited.
	EnrollRate  float64
	EnrollBurst int
	// Events, when set, feeds GET /api/v1/revocations/events; Done ends its
	// streams (the server shutting down: Shutdown does not cancel requests).
	Events Subscribe
	Done   <-chan struct{}
	// RenewRate and RenewBurst limit renewals (/renew, EST simplereenroll)
	// per client certificate (requests per second, token bucket); defaults
	// one per 10 s with a burst of 3. With ca's bound on valid certificates
	// per device, a device cannot mint itself certificates in a loop.
	RenewRate  float64
	RenewBurst int
	Logger     *slog.Logger
}

// Validate refuses an incomplete configuration.
func (c Config) Validate() error {
	if c.Enroller == nil || c.Revoker == nil || c.Tokens == nil || c.Credentials == nil || c.Directory == nil || c.Audit == nil {
		return errors.New("api: Enroller, Revoker, Tokens, Credentials, Directory and Audit are required")
	}
	if c.PublicURL == "" {
		return errors.New("api: PublicURL is required")
	}
	return nil
}

// maxBody bounds every request body: a CSR with an RSA-8192 key and 4 KiB
// of metadata fit many times over.
const maxBody = 64 << 10

// API serves /api/v1.
type API struct {
	cfg     Config
	log     *slog.Logger
	err     errorWriter
	limits  *limiters
	renews  *limiters
	streams streamSlots
}

// New returns the API's handler, to be mounted at the root of the HTTPS listener.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RenewRate <= 0 {
		cfg.RenewRate, cfg.RenewBurst = 0.1, 3
	}
	a := &API{cfg: cfg, log: cfg.Logger, err: errorWriter{cfg.Logger}, limits: newLimiters(cfg.EnrollRate, cfg.EnrollBurst, time.Now),
		renews: newLimiters(cfg.RenewRate, cfg.RenewBurst, time.Now)}
	return a.routes(), nil
}

// route is one administrative route and the least role it needs. The table
// is the single source of truth for authorization: the tests walk chi's
// routes and fail on any route missing from it.
type route struct {
	method, pattern string
	role            pki.Role
	handler         func(a *API, w http.ResponseWriter, r *http.Request)
}

var adminRoutes = []route{
	{http.MethodGet, "/devices", pki.RoleAuditor, (*API).listDevices},
	{http.MethodGet, "/devices/{id}", pki.RoleAuditor, (*API).getDevice},
	{http.MethodPost, "/devices/{id}/revoke", pki.RoleOperator, (*API).revokeDevice},
	{http.MethodGet, "/certificates", pki.RoleAuditor, (*API).listCertificates},
	{http.MethodGet, "/certificates/{serial}", pki.RoleAuditor, (*API).getCertificate},
	{http.MethodPost, "/certificates/{serial}/revoke", pki.RoleOperator, (*API).revokeCertificate},
	{http.MethodPost, "/credentials", pki.RoleAdmin, (*API).createCredential},
	{http.MethodGet, "/credentials", pki.RoleAdmin, (*API).listCredentials},
	{http.MethodDelete, "/credentials/{id}", pki.RoleAdmin, (*API).disableCredential},
	{http.MethodGet, "/audit", pki.RoleAuditor, (*API).listAudit},
	{http.MethodGet, "/revocations/events", pki.RoleBroker, (*API).revocationEvents},
	{http.MethodPost, "/revocations:bulk-preview", pki.RoleOperator, (*API).previewBulk},
	{http.MethodPost, "/revocations:bulk", pki.RoleOperator, (*API).revokeBulk},
	{http.MethodGet, "/revocations/jobs/{id}", pki.RoleOperator, (*API).getJob},
}

func (a *API) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, a.recoverer, bodyLimit, middleware.GetHead, textcheck.Middleware(func(w http.ResponseWriter, r *http.Request, what string) {
		writeProblem(w, r, Problem{Status: http.StatusBadRequest, Code: "invalid_text", Title: "The request is invalid", Detail: textcheck.Message(what)})
	}))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, Problem{Status: http.StatusNotFound, Code: "no_such_route", Title: "Not found", Detail: "no such API route"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, Problem{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Title: "Method not allowed",
			Detail: r.Method + " is not allowed on " + r.URL.Path})
	})
	r.Route(estPrefix, func(r chi.Router) {
		r.Get("/cacerts", a.estCACerts)
		r.Post("/simpleenroll", a.estSimpleEnroll)
		r.Post("/simplereenroll", a.estSimpleReenroll)
	})
	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/openapi.yaml", serveSpec)
		r.Post("/enroll", a.enroll)
		r.Post("/renew", a.renew)
		for _, rt := range adminRoutes {
			h := rt.handler
			r.With(a.requireRole(rt.role)).Method(rt.method, rt.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(a, w, r) }))
		}
	})
	return r
}

// recoverer turns a panic into a 500 problem, logged with its request id.
func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.err.send(w, r, errors.New("panic in handler"))
				a.log.ErrorContext(r.Context(), "panic", "value", v, "request_id", middleware.GetReqID(r.Context()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func bodyLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

// actor describes the caller for the audit log.
func actor(r *http.Request, name string) pki.Actor {
	return pki.Actor{Name: name, RemoteAddr: r.RemoteAddr, RequestID: middleware.GetReqID(r.Context())}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Route is one route the API serves: a method and a chi pattern.
type Route struct{ Method, Pattern string }

// Routes lists every route the API serves, walked from its router, so that
// tests from outside (a running server's hostile-input suite) cover each.
func Routes() []Route {
	var out []Route
	_ = chi.Walk((&API{}).routes().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, Route{method, route})
		return nil
	})
	return out
}
