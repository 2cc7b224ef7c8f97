// Package public serves fleetpki's unauthenticated HTTP endpoints (the
// --http-addr listener): the CA certificates, OCSP, the CRLs, health,
// readiness and metrics. Everything here is public or signed; nothing
// changes state.
//
// Policy: metrics are labelled by route pattern, never by raw path; text
// in paths and queries is checked at the edge (OCSP's binary requests
// excepted, which answer malformedRequest themselves).
package public

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/internal/textcheck"
)

// Config configures the handler.
type Config struct {
	// ChainPEM (issuing CA first, root last), Root and Intermediate are the
	// CA certificates served at /ca.pem and /ca/*.crt; nil Root leaves them out.
	ChainPEM     []byte
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	// Ready reports whether the process can serve requests that need the
	// database (the store's Ping); /readyz answers 503 when it fails.
	Ready func(context.Context) error
	// Registry receives the HTTP metrics and is served at /metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// OCSP answers POST /ocsp and GET /ocsp/{request}; nil leaves them out.
	OCSP http.Handler
	// CRLs serves GET /crl, /crl.pem, /crl/delta and /crl/root; nil leaves them out.
	CRLs *crl.Publisher
	// RootCRL, when set, serves /crl/root instead of CRLs.Root: the bundle
	// an offline root signed.
	RootCRL http.Handler
	// NotReady says what /readyz answers when Ready fails (default "the
	// database does not answer").
	NotReady string
}

// readyTimeout bounds one readiness check, well under a probe's own timeout.
const readyTimeout = 2 * time.Second

// caCacheControl lets clients cache the CA certificates for a while; they
// change only when an operator replaces the issuing CA and restarts.
const caCacheControl = "public, max-age=300"

// New routes the unauthenticated endpoints: health, readiness and metrics
// always; the CA certificates, OCSP and the CRLs when configured (serve's
// --http-addr has all; `fleetpki ocsp` OCSP only; the standalone broker's
// --metrics-addr none).
func New(cfg Config) http.Handler {
	m := newHTTPMetrics(cfg.Registry)
	if cfg.NotReady == "" {
		cfg.NotReady = "the database does not answer"
	}
	chainPEM := cfg.ChainPEM

	r := chi.NewRouter()
	r.Use(m.middleware, middleware.GetHead, TextGuard)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteText(w, http.StatusOK, "ok\n")
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := cfg.Ready(ctx); err != nil {
			// Our dependency's fault, so Warn; the cause stays in the log.
			cfg.Logger.WarnContext(ctx, "readiness check failed", "err", err)
			WriteText(w, http.StatusServiceUnavailable, "not ready: "+cfg.NotReady+"\n")
			return
		}
		WriteText(w, http.StatusOK, "ready\n")
	})
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
	}))
	if cfg.Root != nil {
		r.Get("/ca.pem", staticHandler("application/x-pem-file", chainPEM))
		r.Get("/ca/root.crt", staticHandler("application/pkix-cert", cfg.Root.Raw))
		r.Get("/ca/intermediate.crt", staticHandler("application/pkix-cert", cfg.Intermediate.Raw))
	}
	if cfg.CRLs != nil {
		r.Method(http.MethodGet, "/crl", cfg.CRLs.Issuing.Handler(false))
		r.Method(http.MethodGet, "/crl.pem", cfg.CRLs.Issuing.Handler(true))
		r.Method(http.MethodGet, "/crl/delta", cfg.CRLs.Issuing.DeltaHandler())
		if cfg.RootCRL != nil {
			r.Method(http.MethodGet, "/crl/root", cfg.RootCRL)
		} else if cfg.CRLs.Root != nil {
			r.Method(http.MethodGet, "/crl/root", cfg.CRLs.Root.Handler(false))
		}
	}
	if cfg.OCSP != nil {
		r.Method(http.MethodPost, "/ocsp", cfg.OCSP)
		r.Method(http.MethodGet, "/ocsp/*", cfg.OCSP)
	}
	return r
}

// TextGuard refuses paths and queries with NUL or invalid UTF-8 (package
// textcheck) on the public listener; OCSP requests are binary and answer
// with OCSP's own malformedRequest instead.
func TextGuard(next http.Handler) http.Handler {
	guarded := textcheck.Middleware(func(w http.ResponseWriter, _ *http.Request, what string) {
		WriteText(w, http.StatusBadRequest, textcheck.Message(what)+"\n")
	})(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ocsp" || strings.HasPrefix(r.URL.Path, "/ocsp/") {
			next.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

func staticHandler(contentType string, body []byte) http.HandlerFunc {
	length := strconv.Itoa(len(body))
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", length)
		w.Header().Set("Cache-Control", caCacheControl)
		_, _ = w.Write(body) // a failed write means the client went away
	}
}

// WriteText answers a short plain-text body that is never cached.
func WriteText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// httpMetrics counts and times requests by route pattern (never by raw path,
// which would let a scanner create unbounded series) and status code.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetpki_http_requests_total",
			Help: "HTTP requests answered by the public listener, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleetpki_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests on the public listener, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8), // 0.5 ms … 8 s
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// middleware runs first, so that chi has matched the route by the time the
// handler returns and the pattern can label the metrics.
func (m *httpMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK // the handler wrote nothing: net/http sends 200
		}
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
