package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/broker/remote"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/client"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/internal/run"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/public"
	"github.com/fleetpki/fleetpki/revocation"
)

// envEventsToken carries the broker's API token for the revocation event
// stream, so that it need not appear in the process list.
const envEventsToken = "FLEETPKI_EVENTS_TOKEN"

// brokerStandalone runs the MQTT broker without the CA: device certificates
// are checked against the fleetpki chain and, over OCSP, a remote
// fleetpki. Its own certificate is either static (--tls-cert/--tls-key,
// with --ca-file) or, with --server, enrolled from fleetpki and renewed.
func (c *cli) brokerStandalone(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("broker", cfg)
	metricsAddr := fs.String("metrics-addr", "", "address for /metrics, /healthz and /readyz (plain HTTP); empty is off")
	eventsURL := fs.String("events-url", "", "a fleetpki's revocation event stream (https://HOST:8443/api/v1/revocations/events, verified against the fleetpki chain): revoked devices are re-checked over OCSP at once instead of at the next --recheck-interval (default with --server: the server's stream, as the broker's own identity)")
	eventsTokenFile := fs.String("events-token-file", "", "file holding the API token (role broker) for --events-url (or set "+envEventsToken+"); not needed with --server and profile broker")
	var self selfEnrollOptions
	fs.StringVar(&self.server, "server", "", "fleetpki to enroll the broker's own certificate from (https://PKI:8443); replaces --tls-cert/--tls-key and --ca-file")
	fs.StringVar(&self.fingerprint, "fingerprint", "", "with --server: SHA-256 fingerprint of the fleetpki root")
	fs.StringVar(&self.credentialFile, "credential-file", "", "with --server: file holding the enrollment credential (or set "+envCredential+")")
	fs.StringVar(&self.dataDir, "data-dir", "./fleetpki-broker", "with --server: directory for the broker's key, certificate and the fleetpki chain")
	fs.StringVar(&self.name, "name", "", "with --server: the broker's name in fleetpki (default: its first --dns or --ip)")
	fs.StringVar(&self.profile, "profile", "broker", "with --server: the certificate profile (broker: serverAuth and clientAuth)")
	fs.Var(&self.dns, "dns", "with --server: DNS name devices dial (repeatable)")
	fs.Var(&self.ips, "ip", "with --server: IP address devices dial (repeatable)")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if cfg.MQTTAddr == "" {
		return usageError{errors.New("broker: --mqtt-addr is required")}
	}
	id, err := c.brokerIdentity(ctx, cfg, self, log)
	if err != nil {
		return err
	}
	var eventsToken string
	if *eventsURL == "" && self.server != "" && self.profile == ca.BrokerProfile {
		*eventsURL = strings.TrimRight(self.server, "/") + "/api/v1/revocations/events"
	}
	if *eventsURL != "" {
		eventsToken, err = config.ReadSecret(*eventsTokenFile, c.lookupEnv, envEventsToken)
		if err != nil || (eventsToken == "" && id.keeper == nil) {
			return usageError{fmt.Errorf("broker: --events-url needs a token of a user with role broker: --events-token-file or %s", envEventsToken)}
		}
	}
	roots, issuer := id.roots, id.issuer
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
		getCert: id.getCert})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "listening", "listener", "mqtt", "addr", b.Addr().String(), "issuer", issuer.Subject.String(),
		"ocsp", cfg.OCSPURL, "crl", cfg.CRLURL, "fail_open_grace", cfg.Remote.FailOpenGrace)
	parts := []run.Part{{Name: "mqtt", Run: b.Run}}
	if id.keeper != nil {
		parts = append(parts, run.Part{Name: "broker certificate", Run: id.keeper.Run})
	}
	if hints != nil {
		// No overall timeout: the stream is long-lived; the dial and headers
		// are bounded. The server is verified against the fleetpki chain;
		// a self-enrolled broker presents its own certificate.
		tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if id.keeper != nil {
			tlsCfg.GetClientCertificate = id.keeper.GetClientCertificate
		}
		client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 10 * time.Second, TLSClientConfig: tlsCfg}}
		parts = append(parts, run.Part{Name: "revocation events", Run: func(ctx context.Context) error {
			revocation.Follow(ctx, client, *eventsURL, eventsToken, hints, log)
			return nil
		}})
	}
	if *metricsAddr != "" {
		mux := public.New(public.Config{Registry: reg, Logger: log, Ready: func(context.Context) error { return b.Err() },
			NotReady: "the MQTT listener is gone"})
		ln, err := listen.Open(*metricsAddr, "--metrics-addr", listen.Config{Name: "metrics", Metrics: lm, Logger: log})
		if err != nil {
			return err
		}
		parts = append(parts, run.Part{Name: "metrics", Run: (&listen.Server{Name: "metrics", Listener: ln, HTTP: newHTTPServer(mux, log)}).Run})
	}
	return run.All(ctx, parts)
}

type selfEnrollOptions struct {
	server, fingerprint, credentialFile, dataDir, name, profile string
	dns, ips                                                    config.ListValue
}

// brokerID is the standalone broker's own identity and its view of the
// fleetpki chain.
type brokerID struct {
	roots   *x509.CertPool
	issuer  *x509.Certificate
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	keeper  *client.Keeper // nil for a static certificate
}

// brokerIdentity loads the static certificate and chain, or enrolls (or
// loads from --data-dir) the broker's certificate from --server.
func (c *cli) brokerIdentity(ctx context.Context, cfg *config.Config, o selfEnrollOptions, log *slog.Logger) (brokerID, error) {
	if o.server == "" {
		if cfg.CAFile == "" || cfg.TLSCert == "" || cfg.TLSKey == "" {
			return brokerID{}, usageError{errors.New("broker: give --server, --fingerprint and --credential-file (the broker enrolls itself), or --ca-file (the fleetpki chain) and --tls-cert/--tls-key (its own certificate)")}
		}
		roots, issuer, err := ca.LoadTrust(cfg.CAFile)
		if err != nil {
			return brokerID{}, err
		}
		getCert, err := staticCert(cfg.TLSCert, cfg.TLSKey)
		return brokerID{roots: roots, issuer: issuer, getCert: getCert}, err
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" || cfg.CAFile != "" {
		return brokerID{}, usageError{errors.New("broker: --server enrolls the broker's certificate and fetches the chain; drop --tls-cert, --tls-key and --ca-file")}
	}
	if o.fingerprint == "" || len(o.dns)+len(o.ips) == 0 {
		return brokerID{}, usageError{errors.New("broker: --server needs --fingerprint (of the fleetpki root) and at least one --dns or --ip")}
	}
	credential, err := config.ReadSecret(o.credentialFile, c.lookupEnv, envCredential)
	if err != nil {
		return brokerID{}, usageError{fmt.Errorf("broker: --credential-file: %w", err)}
	}
	if o.name == "" {
		o.name = append(append([]string{}, o.dns...), o.ips...)[0]
	}
	k, err := client.Keep(ctx, o.server, o.fingerprint, client.KeeperConfig{Dir: o.dataDir, Credential: credential, Logger: log,
		Request: client.EnrollRequest{DeviceID: o.name, Profile: o.profile, DNSNames: o.dns, IPAddresses: o.ips}})
	if err != nil {
		return brokerID{}, fmt.Errorf("broker: its certificate: %w", err)
	}
	roots, issuer, err := k.Trust()
	if err != nil {
		return brokerID{}, err
	}
	return brokerID{roots: roots, issuer: issuer, getCert: k.GetCertificate, keeper: k}, nil
}
