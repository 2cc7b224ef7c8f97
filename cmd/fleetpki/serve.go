package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store/postgres"
	"github.com/fleetpki/fleetpki/web"
)

// Timeouts of the public HTTP listener. Its answers are small (certificates,
// health, metrics; later OCSP and CRLs), so a slow client gets little time.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	// shutdownTimeout bounds the wait for in-flight requests after a signal.
	shutdownTimeout = 10 * time.Second
)

// serve runs fleetpki: it opens (and migrates) the store, loads or creates
// the CA and the admin user, and serves the public HTTP endpoints until
// SIGINT or SIGTERM.
func (c *cli) serve(ctx context.Context, args []string) error {
	cfg := &config{}
	fs := c.newFlags("serve", cfg)
	log, err := c.start(fs, cfg, args, true)
	if err != nil {
		return err
	}
	warnDataDirMode(ctx, cfg, log)

	st, err := openStore(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer st.Close()

	h, created, err := loadOrCreateCA(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	authority, err := newCA(ctx, cfg, h, st, log)
	if err != nil {
		return err
	}
	if err := ensureAdmin(ctx, cfg, st, log); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	rawLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %q: %w", cfg.HTTPAddr, err)
	}
	ln := listen.New(rawLn, listen.Config{Name: "http", Metrics: lm, Logger: log})
	var tln *listen.Listener // set below, before anything is served
	var mqttBroker *broker.Broker
	ocspSvc, err := newOCSPService(ctx, authority, st, reg, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	crls, err := newCRLService(ctx, cfg, h, st, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	ready := func(ctx context.Context) error {
		errs := []error{st.Ping(ctx), ocspSvc.cache.Ready(), crls.ready(ctx), ln.Err(), tln.Err()}
		if mqttBroker != nil {
			errs = append(errs, mqttBroker.Err())
		}
		return errors.Join(errs...)
	}
	streamsDone := make(chan struct{})
	srv := &http.Server{
		Handler: newPublicHandler(publicConfig{Hierarchy: h, Registry: reg, Logger: log, OCSP: ocspSvc.handler,
			CRLs: crls, Ready: ready}),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { close(streamsDone) })

	tlsSrv, self, err := httpsServer(ctx, cfg, authority, st, log, uiDeps{
		publicBase: "http://" + ln.Addr().String(),
		events:     authority.Subscribe,
		eventsDone: streamsDone,
		health: func(ctx context.Context) (web.Health, error) {
			c, err := crls.issuing.Latest(ctx)
			if err != nil {
				return web.Health{}, err
			}
			return web.Health{CRLNumber: c.Number, CRLThisUpdate: c.ThisUpdate, CRLNextUpdate: c.NextUpdate,
				OCSPSignerEnd: ocspSvc.cache.Signer().Responder.NotAfter}, nil
		},
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	rawTLS, err := net.Listen("tcp", cfg.HTTPSAddr)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("--https-addr %q: %w", cfg.HTTPSAddr, err)
	}
	tln = listen.New(rawTLS, listen.Config{Name: "https", TLS: tlsSrv.TLSConfig, Metrics: lm, Logger: log,
		OnHandshakeError: func(remote net.Addr, err error) {
			log.Debug("TLS handshake failed", "listener", "https", "remote", remote.String(), "err", err)
		}})

	var mqttSelf *selfCert
	if cfg.MQTTAddr != "" {
		var stopEvents func()
		mqttBroker, mqttSelf, stopEvents, err = newBundledBroker(ctx, cfg, authority, st, reg, lm, log)
		if err != nil {
			_ = ln.Close()
			_ = tln.Close()
			return err
		}
		defer stopEvents()
	}

	base := "http://" + ln.Addr().String()
	log.InfoContext(ctx, "CA ready", "created", created, "root", h.Root().Subject.String(),
		"issuing_ca", h.Intermediate().Subject.String(), "root_sha256", h.RootFingerprint())
	log.InfoContext(ctx, "listening", "listener", "http", "addr", ln.Addr().String(),
		"url", base, "ca_chain", base+"/ca.pem", "health", base+"/healthz", "metrics", base+"/metrics")
	log.InfoContext(ctx, "listening", "listener", "https", "addr", tln.Addr().String(),
		"url", "https://"+tln.Addr().String(), "api", "https://"+tln.Addr().String()+"/api/v1", "admin_ui", "https://"+tln.Addr().String()+"/")
	if mqttBroker != nil {
		log.InfoContext(ctx, "listening", "listener", "mqtt", "addr", mqttBroker.Addr().String(), "url", "mqtts://"+mqttBroker.Addr().String())
	} else {
		log.InfoContext(ctx, "the MQTT broker is off (--mqtt-addr is empty)")
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http listener: %w", err)
		}
		return nil
	})
	g.Go(func() error { return serveTLS(tlsSrv, tln) })
	if cfg.PprofAddr != "" {
		g.Go(func() error { return servePprof(gctx, cfg.PprofAddr, log) })
	}
	g.Go(func() error { return ocspSvc.run(gctx) })
	if _, ok := st.(*postgres.Store); !ok {
		// `fleetpki revoke` on the same SQLite file reaches this process by polling.
		g.Go(func() error {
			return pollRevocations(gctx, st, h.IssuerKeyID(), time.Second, log, authority.PublishStored)
		})
	}
	if pg, ok := st.(*postgres.Store); ok {
		// Replicas sharing the database hear of each other's revocations.
		g.Go(func() error {
			return pg.ListenRevocations(gctx, log, func(serial pki.Serial) {
				if err := authority.PublishStored(gctx, serial); err != nil {
					log.WarnContext(gctx, "revocation from another replica not applied", "serial", serial, "err", err)
				}
			})
		})
	}
	g.Go(func() error {
		events, cancel := authority.Subscribe(1024)
		defer cancel()
		return crls.run(gctx, events)
	})
	if self != nil {
		g.Go(func() error { return self.run(gctx) })
	}
	if mqttBroker != nil {
		g.Go(func() error { return mqttBroker.Run(gctx) })
		g.Go(func() error { return mqttSelf.run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		log.InfoContext(ctx, "shutting down", "timeout", shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), shutdownTimeout)
		defer cancel()
		return errors.Join(srv.Shutdown(sctx), tlsSrv.Shutdown(sctx))
	})
	if err := g.Wait(); err != nil {
		return err
	}
	log.InfoContext(context.WithoutCancel(ctx), "stopped")
	return nil
}
