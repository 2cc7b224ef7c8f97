package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

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
	src, err := ocspresponder.NewStoredSource(ocspresponder.StoredConfig{Lookups: e.st, CacheBytes: cfg.OCSPCacheBytes, Validity: cfg.OCSPValidityD})
	if err != nil {
		return err
	}
	filtered, err := ocspresponder.NewFilterSource(issuer, src)
	if err != nil {
		return err
	}
	reg := newRegistry()
	if err := ocspresponder.RegisterCache(reg, src); err != nil {
		return err
	}
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	ln, err := listen.Open(cfg.HTTPAddr, "--http-addr", listen.Config{Name: "ocsp", Metrics: lm, Logger: log})
	if err != nil {
		return err
	}
	ready := func(ctx context.Context) error { return errors.Join(e.st.Ping(ctx), ln.Err()) }
	rs := ocspresponder.NewResponder(filtered, log, reg)
	rs.SetHTTPMaxAge(cfg.OCSPMaxAgeHTTP)
	handler := public.New(public.Config{Registry: reg, Logger: log, Ready: ready, OCSP: rs})
	srv := &listen.Server{Name: "ocsp", Listener: ln, HTTP: newHTTPServer(handler, log)}
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
