package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store/postgres"
)

// ocspOnly runs a responder-only process: it answers OCSP from the
// responses that serve pre-signs into the database, with no CA key and no
// responder key, so it can run where keys must not. Revocations arrive over
// Postgres notifications (on SQLite, only the same host's file is shared).
func (c *cli) ocspOnly(ctx context.Context, args []string) error {
	cfg := &config{}
	fs := c.newFlags("ocsp", cfg)
	log, err := c.start(fs, cfg, args, false)
	if err != nil {
		return err
	}
	if err := validateAddr(cfg.HTTPAddr); err != nil {
		return fmt.Errorf("--http-addr %q: %w", cfg.HTTPAddr, err)
	}
	issuer, err := crlIssuer(cfg.DataDir, cfg.CAFile)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer st.Close()
	src, err := ocspresponder.NewStoredSource(ocspresponder.StoredConfig{Responses: st, Status: st})
	if err != nil {
		return err
	}
	filtered, err := ocspresponder.NewFilterSource(issuer, src)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	responder := ocspresponder.NewResponder(filtered, log, reg)
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	rawLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", cfg.HTTPAddr, err)
	}
	ln := listen.New(rawLn, listen.Config{Name: "ocsp", Metrics: lm, Logger: log})

	r := chi.NewRouter()
	r.Use(middleware.GetHead, textGuard)
	r.Method(http.MethodPost, "/ocsp", responder)
	r.Method(http.MethodGet, "/ocsp/*", responder)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := errors.Join(st.Ping(rctx), ln.Err()); err != nil {
			log.WarnContext(rctx, "readiness check failed", "err", err)
			writeText(w, http.StatusServiceUnavailable, "not ready: the database does not answer\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: r, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout,
		IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.InfoContext(ctx, "listening", "listener", "ocsp", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String()+"/ocsp",
		"issuer", issuer.Subject.String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http listener: %w", err)
		}
		return nil
	})
	if pg, ok := st.(*postgres.Store); ok {
		g.Go(func() error { return pg.ListenRevocations(gctx, log, src.Revoked) })
	} else {
		keyID := hex.EncodeToString(issuer.SubjectKeyId)
		g.Go(func() error {
			return pollRevocations(gctx, st, keyID, time.Second, log, func(_ context.Context, s pki.Serial) error {
				src.Revoked(s)
				return nil
			})
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), shutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
