package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/broker/remote"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// brokerStandalone runs the MQTT broker without the CA: device certificates
// are checked against --ca-file and, over OCSP, a remote fleetpki.
func (c *cli) brokerStandalone(ctx context.Context, args []string) error {
	cfg := &config{}
	fs := c.newFlags("broker", cfg)
	metricsAddr := fs.String("metrics-addr", "", "address for /metrics and /healthz (plain HTTP); empty is off")
	eventsURL := fs.String("events-url", "", "a fleetpki's revocation event stream (https://HOST:8443/api/v1/revocations/events, verified against --ca-file): revoked devices are re-checked over OCSP at once instead of at the next --recheck-interval")
	eventsTokenFile := fs.String("events-token-file", "", "file holding the API token (role broker) for --events-url (or set "+envEventsToken+")")
	log, err := c.start(fs, cfg, args, false)
	if err != nil {
		return err
	}
	if cfg.CAFile == "" || cfg.TLSCert == "" || cfg.TLSKey == "" {
		return usageError{errors.New("broker: --ca-file (the fleetpki chain) and --tls-cert/--tls-key (the broker's own certificate) are required")}
	}
	if cfg.MQTTAddr == "" {
		return usageError{errors.New("broker: --mqtt-addr is required")}
	}
	durations := map[string]*time.Duration{}
	for name, v := range map[string]string{"--ocsp-max-age": cfg.OCSPMaxAge, "--recheck-interval": cfg.RecheckInterval, "--fail-open-grace": cfg.FailOpenGrace} {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return usageError{fmt.Errorf("broker: %s %q: want a duration such as 5m", name, v)}
		}
		durations[name] = &d
	}
	anyID, err := strconv.ParseBool(cfg.MQTTAnyClientID)
	if err != nil {
		return usageError{fmt.Errorf("broker: --mqtt-any-client-id %q: want true or false", cfg.MQTTAnyClientID)}
	}
	chainPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return fmt.Errorf("--ca-file: %w", unwrapPath(err))
	}
	issuer, err := crlIssuer("", cfg.CAFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(chainPEM) {
		return fmt.Errorf("--ca-file %s holds no certificate", cfg.CAFile)
	}
	kp, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", unwrapPath(err))
	}
	rules, err := brokerRules(cfg)
	if err != nil {
		return err
	}
	maxClients, err := brokerMaxClients(cfg)
	if err != nil {
		return usageError{err}
	}
	maxRetained, maxRetainedBytes, err := brokerRetained(cfg)
	if err != nil {
		return usageError{err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	checker, err := remote.New(remote.Config{URL: cfg.OCSPURL, CRLURL: cfg.CRLURL, MaxAge: *durations["--ocsp-max-age"],
		FailOpenGrace: *durations["--fail-open-grace"], Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	var hints chan pki.Serial
	var eventsToken string
	if *eventsURL != "" {
		hints = make(chan pki.Serial, 1024)
		if eventsToken, err = readSecret(*eventsTokenFile, c.lookupEnv, envEventsToken); err != nil || eventsToken == "" {
			return usageError{fmt.Errorf("broker: --events-url needs a token of a user with role broker: --events-token-file or %s", envEventsToken)}
		}
	}
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	b, err := broker.New(broker.Config{
		Addr: cfg.MQTTAddr, Roots: roots, Issuer: issuer, Hints: hints,
		GetCertificate:  func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &kp, nil },
		Checker:         checker,
		RecheckInterval: *durations["--recheck-interval"],
		Rules:           rules, AnyClientID: anyID, MaxClients: maxClients, Listeners: lm, Registerer: reg, Logger: log,
		MaxRetained: maxRetained, MaxRetainedBytes: maxRetainedBytes,
	})
	if err != nil {
		return err
	}
	if err := b.Listen(); err != nil {
		return err
	}
	log.InfoContext(ctx, "listening", "listener", "mqtt", "addr", b.Addr().String(), "issuer", issuer.Subject.String(),
		"ocsp", cfg.OCSPURL, "crl", cfg.CRLURL, "fail_open_grace", *durations["--fail-open-grace"])
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Run(gctx) })
	if hints != nil {
		// No overall timeout: the stream is long-lived; the dial and headers
		// are bounded. The server is verified against the fleetpki chain.
		client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 10 * time.Second,
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
		g.Go(func() error { revocation.Follow(gctx, client, *eventsURL, eventsToken, hints, log); return nil })
	}
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := b.Err(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not ready: the MQTT listener is gone\n")
				return
			}
			writeText(w, http.StatusOK, "ready\n")
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
		rawLn, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %q: %w", *metricsAddr, err)
		}
		ln := listen.New(rawLn, listen.Config{Name: "metrics", Metrics: lm, Logger: log})
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error { <-gctx.Done(); return srv.Close() })
	}
	return g.Wait()
}

// envEventsToken carries the broker's API token for the revocation event
// stream, so that it need not appear in the process list.
const envEventsToken = "FLEETPKI_EVENTS_TOKEN"

// readSecret reads a secret from file (its first line) or, when file is
// empty, from the environment variable env.
func readSecret(file string, lookupEnv func(string) (string, bool), env string) (string, error) {
	if file == "" {
		v, _ := lookupEnv(env)
		return strings.TrimSpace(v), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, unwrapPath(err))
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}
