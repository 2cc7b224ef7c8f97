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
	"time"

	"github.com/fleetpki/fleetpki/broker/remote"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/public"
	"github.com/fleetpki/fleetpki/revocation"
)

// envEventsToken carries the broker's API token for the revocation event
// stream, so that it need not appear in the process list.
const envEventsToken = "FLEETPKI_EVENTS_TOKEN"

// brokerStandalone runs the MQTT broker without the CA: device certificates
// are checked against --ca-file and, over OCSP, a remote fleetpki.
func (c *cli) brokerStandalone(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("broker", cfg)
	metricsAddr := fs.String("metrics-addr", "", "address for /metrics, /healthz and /readyz (plain HTTP); empty is off")
	eventsURL := fs.String("events-url", "", "a fleetpki's revocation event stream (https://HOST:8443/api/v1/revocations/events, verified against --ca-file): revoked devices are re-checked over OCSP at once instead of at the next --recheck-interval")
	eventsTokenFile := fs.String("events-token-file", "", "file holding the API token (role broker) for --events-url (or set "+envEventsToken+")")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if cfg.CAFile == "" || cfg.TLSCert == "" || cfg.TLSKey == "" {
		return usageError{errors.New("broker: --ca-file (the fleetpki chain) and --tls-cert/--tls-key (the broker's own certificate) are required")}
	}
	if cfg.MQTTAddr == "" {
		return usageError{errors.New("broker: --mqtt-addr is required")}
	}
	var eventsToken string
	if *eventsURL != "" {
		if eventsToken, err = config.ReadSecret(*eventsTokenFile, c.lookupEnv, envEventsToken); err != nil || eventsToken == "" {
			return usageError{fmt.Errorf("broker: --events-url needs a token of a user with role broker: --events-token-file or %s", envEventsToken)}
		}
	}
	chainPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return fmt.Errorf("--ca-file: %w", config.UnwrapPath(err))
	}
	issuer, err := ca.LoadIssuer("", cfg.CAFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(chainPEM) {
		return fmt.Errorf("--ca-file %s holds no certificate", cfg.CAFile)
	}
	kp, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", config.UnwrapPath(err))
	}
	reg := newRegistry()
	lm, err := listen.NewMetrics(reg)
	if err != nil {
		return err
	}
	checker, err := remote.New(remote.Config{URL: cfg.OCSPURL, CRLURL: cfg.CRLURL, MaxAge: cfg.Remote.OCSPMaxAge,
		FailOpenGrace: cfg.Remote.FailOpenGrace, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	var hints chan pki.Serial
	if *eventsURL != "" {
		hints = make(chan pki.Serial, 1024)
	}
	b, err := newBroker(cfg, brokerDeps{roots: roots, issuer: issuer, checker: checker, hints: hints, lm: lm, reg: reg, log: log,
		getCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &kp, nil }})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "listening", "listener", "mqtt", "addr", b.Addr().String(), "issuer", issuer.Subject.String(),
		"ocsp", cfg.OCSPURL, "crl", cfg.CRLURL, "fail_open_grace", cfg.Remote.FailOpenGrace)
	parts := []component{{"mqtt", b.Run}}
	if hints != nil {
		// No overall timeout: the stream is long-lived; the dial and headers
		// are bounded. The server is verified against the fleetpki chain.
		client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 10 * time.Second,
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
		parts = append(parts, component{"revocation events", func(ctx context.Context) error {
			revocation.Follow(ctx, client, *eventsURL, eventsToken, hints, log)
			return nil
		}})
	}
	if *metricsAddr != "" {
		mux := public.New(public.Config{Registry: reg, Logger: log, Ready: func(context.Context) error { return b.Err() },
			NotReady: "the MQTT listener is gone"})
		raw, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %q: %w", *metricsAddr, err)
		}
		ln := listen.New(raw, listen.Config{Name: "metrics", Metrics: lm, Logger: log})
		parts = append(parts, component{"metrics", (&listen.Server{Name: "metrics", Listener: ln, HTTP: newHTTPServer(mux, log)}).Run})
	}
	return runAll(ctx, parts)
}
