package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/public"
)

// ocspOnly runs a responder-only process: it answers OCSP from the
// responses that serve pre-signs into the database, with no CA key and no
// responder key, so it can run where keys must not. Revocations arrive
// through the store (Postgres notifications, SQLite polling).
func (c *cli) ocspOnly(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("ocsp", cfg)
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	issuer, err := ca.LoadIssuer(cfg.DataDir, cfg.CAFile)
	if err != nil {
		return err
	}
	e, err := c.open(ctx, cfg, log, openStoreNoMigr)
	if err != nil {
		return err
	}
	defer e.close()
	src, err := ocspresponder.NewStoredSource(ocspresponder.StoredConfig{Responses: e.st, Status: e.st})
	if err != nil {
		return err
	}
	filtered, err := ocspresponder.NewFilterSource(issuer, src)
	if err != nil {
		return err
	}
	reg := newRegistry()
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	rawLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", cfg.HTTPAddr, err)
	}
	ln := listen.New(rawLn, listen.Config{Name: "ocsp", Metrics: lm, Logger: log})
	responder := ocspresponder.NewResponder(filtered, log, reg)
	r := chi.NewRouter()
	r.Use(middleware.GetHead, public.TextGuard)
	r.Method(http.MethodPost, "/ocsp", responder)
	r.Method(http.MethodGet, "/ocsp/*", responder)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { public.WriteText(w, http.StatusOK, "ok\n") })
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := errors.Join(e.st.Ping(rctx), ln.Err()); err != nil {
			log.WarnContext(rctx, "readiness check failed", "err", err)
			public.WriteText(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
		public.WriteText(w, http.StatusOK, "ready\n")
	})
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &listen.Server{Name: "ocsp", Listener: ln, HTTP: newHTTPServer(r, log)}
	log.InfoContext(ctx, "listening", "listener", "ocsp", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String()+"/ocsp",
		"issuer", issuer.Subject.String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return e.st.ListenRevocations(gctx, log, src.Revoked) })
	return g.Wait()
}

// newHTTPServer is an http.Server with the timeouts of fleetpki's
// listeners: answers are small, so a slow client gets little time.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}
