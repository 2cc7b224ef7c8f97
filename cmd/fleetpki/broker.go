package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/pki"
)

// statusReader reads a certificate's stored state.
type statusReader interface {
	GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
}

// storeChecker is the bundled broker's RevocationChecker: the stored status,
// the same the OCSP responder answers from. A certificate the store does
// not hold (or holds with other bytes) is an error, so it is refused.
type storeChecker struct{ st statusReader }

func (c storeChecker) Revoked(ctx context.Context, leaf, _ *x509.Certificate) (bool, error) {
	rec, err := c.st.GetCertificate(ctx, pki.NewSerial(leaf.SerialNumber))
	if err != nil {
		return false, fmt.Errorf("certificate status: %w", err)
	}
	if string(rec.DER) != string(leaf.Raw) {
		return false, fmt.Errorf("certificate %s differs from the one issued under that serial", rec.Serial)
	}
	return rec.Status == pki.CertRevoked, nil
}

// brokerMaxClients reads --mqtt-max-clients.
func brokerMaxClients(cfg *config) (int64, error) {
	n, err := strconv.ParseInt(cfg.MQTTMaxClients, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("--mqtt-max-clients %q: want a whole number of at least 1", cfg.MQTTMaxClients)
	}
	return n, nil
}

// brokerRetained reads --mqtt-max-retained and --mqtt-max-retained-bytes.
func brokerRetained(cfg *config) (count, bytes int, err error) {
	if count, err = strconv.Atoi(cfg.MQTTMaxRetained); err != nil || count < 1 {
		return 0, 0, fmt.Errorf("--mqtt-max-retained %q: want a whole number of at least 1", cfg.MQTTMaxRetained)
	}
	if bytes, err = strconv.Atoi(cfg.MQTTMaxRetBytes); err != nil || bytes < 1 {
		return 0, 0, fmt.Errorf("--mqtt-max-retained-bytes %q: want a whole number of at least 1", cfg.MQTTMaxRetBytes)
	}
	return count, bytes, nil
}

// brokerRules reads --mqtt-acl-file, or the default rules.
func brokerRules(cfg *config) ([]broker.Rule, error) {
	if cfg.MQTTACLFile == "" {
		return broker.DefaultRules(), nil
	}
	f, err := os.Open(cfg.MQTTACLFile)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-acl-file: %w", unwrapPath(err))
	}
	defer f.Close()
	rules, err := broker.ParseRules(f)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-acl-file %s: %w", cfg.MQTTACLFile, err)
	}
	return rules, nil
}

// newBundledBroker builds serve's broker: its server certificate issued by
// the own CA, status read in process, live sessions ended by the CA's
// revocation events (which include other replicas' through Postgres).
func newBundledBroker(ctx context.Context, cfg *config, c *ca.CA, st statusReader, reg prometheus.Registerer, lm *listen.Metrics, log *slog.Logger) (*broker.Broker, *selfCert, func(), error) {
	rules, err := brokerRules(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	anyID, err := strconv.ParseBool(cfg.MQTTAnyClientID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--mqtt-any-client-id %q: want true or false", cfg.MQTTAnyClientID)
	}
	maxClients, err := brokerMaxClients(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	maxRetained, maxRetainedBytes, err := brokerRetained(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	self := &selfCert{ca: c, names: cfg.tlsNamesFor(cfg.MQTTAddr), log: log.With("listener", "mqtt")}
	if err := self.renew(ctx); err != nil {
		return nil, nil, nil, err
	}
	h := c.Hierarchy()
	roots := x509.NewCertPool()
	roots.AddCert(h.Root())
	events, cancel := c.Subscribe(1024)
	b, err := broker.New(broker.Config{
		Addr:           cfg.MQTTAddr,
		Roots:          roots,
		Issuer:         h.Intermediate(),
		GetCertificate: self.get,
		Checker:        storeChecker{st},
		Revocations:    events,
		Rules:          rules,
		AnyClientID:    anyID,
		MaxClients:     maxClients,
		MaxRetained:    maxRetained, MaxRetainedBytes: maxRetainedBytes,
		Listeners:  lm,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	if err := b.Listen(); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return b, self, cancel, nil
}
