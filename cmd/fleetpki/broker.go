package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/broker"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/internal/listen"
	"github.com/fleetpki/fleetpki/pki"
)

// brokerDeps is what a broker, bundled or standalone, is built from besides
// the MQTT settings.
type brokerDeps struct {
	roots       *x509.CertPool
	issuer      *x509.Certificate
	getCert     func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	checker     broker.RevocationChecker
	revocations <-chan pki.RevocationEvent // bundled: the CA's feed
	hints       <-chan pki.Serial          // standalone: the event stream's
	lm          *listen.Metrics
	reg         prometheus.Registerer
	log         *slog.Logger
}

// newBroker builds and opens the MQTT listener of a broker.
func newBroker(cfg *config.Config, d brokerDeps) (*broker.Broker, error) {
	rules, err := brokerRules(cfg)
	if err != nil {
		return nil, err
	}
	b, err := broker.New(broker.Config{Addr: cfg.MQTTAddr, Roots: d.roots, Issuer: d.issuer, GetCertificate: d.getCert,
		Checker: d.checker, Revocations: d.revocations, Hints: d.hints, RecheckInterval: cfg.Remote.RecheckInterval,
		Rules: rules, AnyClientID: cfg.MQTT.AnyClientID, MaxClients: cfg.MQTT.MaxClients, MaxRetained: cfg.MQTT.MaxRetained,
		MaxRetainedBytes: cfg.MQTT.MaxRetainedBytes, Listeners: d.lm, Registerer: d.reg, Logger: d.log})
	if err != nil {
		return nil, err
	}
	if err := b.Listen(); err != nil {
		return nil, err
	}
	return b, nil
}

// brokerRules reads --mqtt-acl-file, or the default rules.
func brokerRules(cfg *config.Config) ([]broker.Rule, error) {
	if cfg.MQTTACLFile == "" {
		return broker.DefaultRules(), nil
	}
	f, err := os.Open(cfg.MQTTACLFile)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-acl-file: %w", config.UnwrapPath(err))
	}
	defer f.Close()
	rules, err := broker.ParseRules(f)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-acl-file %s: %w", cfg.MQTTACLFile, err)
	}
	return rules, nil
}
