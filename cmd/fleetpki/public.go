package main

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/textcheck"
)

// publicConfig configures the plain-HTTP listener's handler.
type publicConfig struct {
	// Hierarchy provides the CA certificates served at /ca.pem and /ca/*.crt.
	Hierarchy *ca.Hierarchy
	// Ready reports whether the process can serve requests that need the
	// database (the store's Ping); /readyz answers 503 when it fails.
	Ready func(context.Context) error
	// Registry receives the HTTP metrics and is served at /metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// OCSP answers POST /ocsp and GET /ocsp/{request}; nil leaves them out.
	OCSP http.Handler
	// CRLs serves GET /crl, /crl.pem, /crl/delta and /crl/root; nil leaves them out.
	CRLs *crlService
}

// readyTimeout bounds one readiness check, well under a probe's own timeout.
const readyTimeout = 2 * time.Second

// caCacheControl lets clients cache the CA certificates for a while; they
// change only when an operator replaces the issuing CA and restarts.
const caCacheControl = "public, max-age=300"

// newPublicHandler routes the unauthenticated endpoints of --http-addr.
// OCSP and the CRL are served here too, when configured.
func newPublicHandler(cfg publicConfig) http.Handler {
	m := newHTTPMetrics(cfg.Registry)
	h := cfg.Hierarchy
	chainPEM := h.ChainPEM()

	r := chi.NewRouter()
	r.Use(m.middleware, middleware.GetHead, textGuard)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := cfg.Ready(ctx); err != nil {
			// Our dependency's fault, so Warn; the cause stays in the log.
			cfg.Logger.WarnContext(ctx, "readiness check failed", "err", err)
			writeText(w, http.StatusServiceUnavailable, "not ready: the database does not answer\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
	}))
	r.Get("/ca.pem", staticHandler("application/x-pem-file", chainPEM))
	r.Get("/ca/root.crt", staticHandler("application/pkix-cert", h.Root().Raw))
	r.Get("/ca/intermediate.crt", staticHandler("application/pkix-cert", h.Intermediate().Raw))
	if cfg.CRLs != nil {
		r.Method(http.MethodGet, "/crl", cfg.CRLs.issuing.Handler(false))
		r.Method(http.MethodGet, "/crl.pem", cfg.CRLs.issuing.Handler(true))
		r.Method(http.MethodGet, "/crl/delta", cfg.CRLs.issuing.DeltaHandler())
		if cfg.CRLs.root != nil {
			r.Method(http.MethodGet, "/crl/root", cfg.CRLs.root.Handler(false))
		}
	}
	if cfg.OCSP != nil {
		r.Method(http.MethodPost, "/ocsp", cfg.OCSP)
		r.Method(http.MethodGet, "/ocsp/*", cfg.OCSP)
	}
	return r
}

// textGuard refuses paths and queries with NUL or invalid UTF-8 (package
// textcheck) on the public listener; OCSP requests are binary and answer
// with OCSP's own malformedRequest instead.
func textGuard(next http.Handler) http.Handler {
	guarded := textcheck.Middleware(func(w http.ResponseWriter, _ *http.Request, what string) {
		writeText(w, http.StatusBadRequest, textcheck.Message(what)+"\n")
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

func writeText(w http.ResponseWriter, code int, body string) {
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
