package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fleetpki/fleetpki/accounts"
	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/expiry"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/internal/run"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/public"
	"github.com/fleetpki/fleetpki/rootsign"
	"github.com/fleetpki/fleetpki/web"
)

// Timeouts of the HTTP listeners: answers are small (certificates, OCSP,
// CRLs, JSON), so a slow client gets little time.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	readyTimeout      = 2 * time.Second
)

// Lifetimes of the certificates serve issues itself; each is renewed at two
// thirds of its life (package renewal) and at every start.
const (
	serverCertValidity = 30 * 24 * time.Hour
	adminUser          = "admin"
)

// serve runs fleetpki: it opens (and migrates) the store, loads or creates
// the CA and the admin user, builds every running part and runs them under
// one errgroup until SIGINT or SIGTERM.
func (c *cli) serve(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("serve", cfg)
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	warnDataDirMode(ctx, cfg, log)
	e, err := c.open(ctx, cfg, log, openCreateCA)
	if err != nil {
		return err
	}
	defer e.close()
	users := accounts.NewUsers(e.st, nil)
	if created, err := users.EnsureAdmin(ctx, adminUser, cfg.AdminPasswordPath(), cliActor()); err != nil {
		return err
	} else if created {
		log.InfoContext(ctx, "created the admin user; its password is in the file (delete the file once you have stored it elsewhere)",
			"user", adminUser, "password_file", cfg.AdminPasswordPath())
	} else {
		log.InfoContext(ctx, "admin user exists", "user", adminUser)
	}
	reg := newRegistry()
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	var parts []run.Part
	var cancels []func()
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	// subscribe takes a feed of the CA's revocations now, before anything
	// runs, so that no revocation falls between start-up and the first read.
	subscribe := func() <-chan pki.RevocationEvent {
		events, cancel := e.ca.Subscribe(1024)
		cancels = append(cancels, cancel)
		return events
	}
	add := func(name string, fn func(context.Context) error) {
		parts = append(parts, run.Part{Name: name, Run: fn})
	}

	// OCSP: a responder certificate renewed in memory, a caching signer,
	// and the presigner that keeps a response stored for every certificate.
	// The root's answers about the issuing CA come from the same /ocsp:
	// signed here daily when serve holds the root key, else from the
	// bundle the offline root signed (fleetpki root sign).
	h := e.h
	root, err := rootSigner(ctx, cfg, h, log)
	if err != nil {
		return err
	}
	rootPub, err := rootsign.New(ctx, rootsign.Config{Root: h.Root(), Issuing: []*x509.Certificate{h.Intermediate()}, Signer: root,
		File: cfg.RootSignedPath(), Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	add("root-signed", rootPub.Run)
	ocsp, err := ocspresponder.NewService(ctx, ocspresponder.ServiceConfig{Issuer: h.Intermediate(), Certify: e.ca.IssueOCSPResponderCert,
		Store: e.st, Also: rootPub.Answers(), CacheBytes: cfg.OCSPCacheBytes, HTTPMaxAge: cfg.OCSPMaxAgeHTTP, Validity: cfg.OCSPValidityD, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	e.ca.OnIssued(ocsp.Presigner.Issued)
	cacheEvents, presignEvents := subscribe(), subscribe()
	add("ocsp", func(ctx context.Context) error { return ocsp.Run(ctx, cacheEvents, presignEvents) })

	// CRLs: one generator per issuer among replicas.
	crls, err := crl.NewPublisher(ctx, crl.PublisherConfig{Issuer: h.Intermediate(), Signer: h.Signer(), Root: h.Root(), RootSigner: root,
		URL: strings.TrimRight(cfg.PublicURL, "/") + "/crl", Store: e.st, Logger: log,
		Elector: func(name string) func(context.Context) (bool, error) { return e.st.Elector(name).IsLeader }})
	if err != nil {
		return err
	}
	crlEvents := subscribe()
	add("crl", func(ctx context.Context) error { return crls.Run(ctx, crlEvents) })

	// Expiring certificates: counted, and announced to the webhook.
	notifier, err := expiry.New(expiry.Config{Store: e.st, Window: cfg.Expiry.Window, Every: cfg.Expiry.Interval, URL: cfg.Expiry.Webhook, Secret: cfg.Expiry.Secret,
		Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	add("expiry", notifier.Run)

	// Bulk revocations run here, and those a crash cut short resume.
	add("bulk revocations", e.ca.RunJobs)

	// Revocations by other processes sharing the store reach this one's feed.
	add("revocation listener", func(ctx context.Context) error {
		return e.st.ListenRevocations(ctx, log, func(serial pki.Serial) {
			if err := e.ca.PublishStored(ctx, serial); err != nil {
				log.WarnContext(ctx, "revocation from another process not applied", "serial", serial, "err", err)
			}
		})
	})

	// The plain HTTP listener: CA certificates, OCSP, CRLs, health, metrics.
	httpLn, err := listen.Open(cfg.HTTPAddr, "--http-addr", listen.Config{Name: "http", Metrics: lm, Logger: log})
	if err != nil {
		return err
	}
	defer httpLn.Close()
	var mqttBroker *broker.Broker
	var httpsLn *listen.Listener
	ready := func(ctx context.Context) error {
		errs := []error{e.st.Ping(ctx), e.h.CheckKey(ctx), ocsp.Cache.Ready(), crls.Ready(ctx), httpLn.Err(), httpsLn.Err()}
		if mqttBroker != nil {
			errs = append(errs, mqttBroker.Err())
		}
		return errors.Join(errs...)
	}
	add("http", (&listen.Server{Name: "http", Listener: httpLn, HTTP: newHTTPServer(public.New(public.Config{
		ChainPEM: h.ChainPEM(), Root: h.Root(), Intermediate: h.Intermediate(), Registry: reg, Logger: log,
		OCSP: ocsp.Handler, CRLs: crls, RootCRL: rootPub.OfflineCRL(), Ready: ready}), log)}).Run)

	// The HTTPS listener: REST API, EST and the admin UI.
	getCert, err := serverCert(ctx, cfg.TLSCert, cfg.TLSKey, e.ca, cfg.TLSNamesFor(cfg.HTTPSAddr), "https", add, log)
	if err != nil {
		return err
	}
	streamsDone := make(chan struct{})
	handler, err := adminHandler(cfg, e, users, streamsDone, "http://"+httpLn.Addr().String(), func(ctx context.Context) (web.Health, error) {
		l, err := crls.Issuing.Latest(ctx)
		if err != nil {
			return web.Health{}, err
		}
		hl := web.Health{CRLNumber: l.Number, CRLThisUpdate: l.ThisUpdate, CRLNextUpdate: l.NextUpdate,
			OCSPSignerEnd: ocsp.Cache.Signer().Responder.NotAfter}
		if w := rootPub.Warning(); w != "" {
			hl.Warnings = append(hl.Warnings, w)
		}
		return hl, nil
	}, log)
	if err != nil {
		return err
	}
	if httpsLn, err = listen.Open(cfg.HTTPSAddr, "--https-addr", listen.Config{Name: "https", TLS: httpsTLS(h, getCert), Metrics: lm, Logger: log}); err != nil {
		return err
	}
	defer httpsLn.Close()
	add("https", (&listen.Server{Name: "https", Listener: httpsLn, HTTP: newHTTPServer(handler, log),
		OnShutdown: func() { close(streamsDone) }}).Run)

	// The bundled MQTT broker: status read in process, revocations from the feed.
	if cfg.MQTTAddr != "" {
		mqttCert, err := serverCert(ctx, "", "", e.ca, cfg.TLSNamesFor(cfg.MQTTAddr), "mqtt", add, log)
		if err != nil {
			return err
		}
		mqttBroker, err = newBroker(cfg, brokerDeps{roots: pki.CertPool(h.Root()), issuer: h.Intermediate(), getCert: mqttCert,
			checker: broker.StoredStatus{Store: e.st}, revocations: subscribe(), lm: lm, reg: reg, log: log})
		if err != nil {
			return err
		}
		add("mqtt", mqttBroker.Run)
	} else {
		log.InfoContext(ctx, "the MQTT broker is off (--mqtt-addr is empty)")
	}
	if cfg.PprofAddr != "" {
		add("pprof", func(ctx context.Context) error { return listen.Pprof(ctx, cfg.PprofAddr, log) })
	}

	base := "http://" + httpLn.Addr().String()
	log.InfoContext(ctx, "CA ready", "root", h.Root().Subject.String(), "issuing_ca", h.Intermediate().Subject.String(),
		"issuing_key", h.KeyLocation(), "root_sha256", h.RootFingerprint())
	log.InfoContext(ctx, "listening", "listener", "http", "addr", httpLn.Addr().String(),
		"url", base, "ca_chain", base+"/ca.pem", "health", base+"/healthz", "metrics", base+"/metrics")
	log.InfoContext(ctx, "listening", "listener", "https", "addr", httpsLn.Addr().String(),
		"url", "https://"+httpsLn.Addr().String(), "api", "https://"+httpsLn.Addr().String()+"/api/v1", "admin_ui", "https://"+httpsLn.Addr().String()+"/")
	if mqttBroker != nil {
		log.InfoContext(ctx, "listening", "listener", "mqtt", "addr", mqttBroker.Addr().String(), "url", "mqtts://"+mqttBroker.Addr().String())
	}
	if err := run.All(ctx, parts); err != nil {
		return err
	}
	log.InfoContext(context.WithoutCancel(ctx), "stopped")
	return nil
}

// newRegistry is a Prometheus registry with the Go and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// rootSigner returns the root's key when the data directory holds it; nil
// for an imported hierarchy or an offline root, whose root key lives elsewhere.
func rootSigner(ctx context.Context, cfg *config.Config, h *ca.Hierarchy, log *slog.Logger) (crypto.Signer, error) {
	s, err := h.RootSigner(ctx, cfg.DataDir, cfg.KeyPassword)
	switch {
	case errors.Is(err, pki.NotFound):
		log.InfoContext(ctx, "no root key here (an offline root): the root's CRL and OCSP answers come from the bundle 'fleetpki root sign' makes",
			"file", cfg.RootSignedPath())
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("root CRL: %w", err)
	}
	return s, nil
}
