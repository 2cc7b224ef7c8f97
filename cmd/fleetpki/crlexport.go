package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/internal/config"
	"github.com/fleetpki/fleetpki/revocation"
)

// crlExport writes the current CRL (PEM) to a file for brokers that read a
// crlfile (Mosquitto and the like); with --watch it keeps it current and
// runs --exec after each write (package crl's Exporter).
func (c *cli) crlExport(ctx context.Context, args []string) error {
	cfg := &config.Config{}
	fs := c.newFlags("crl export", cfg)
	out := fs.String("out", "", "file to write the CRL to (PEM)")
	remote := fs.String("url", "", "base URL of a remote fleetpki's public listener (e.g. http://pki:8080); empty reads the local store")
	watch := fs.Bool("watch", false, "keep running and rewrite the file whenever the CRL changes")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch looks for a new CRL")
	execCmd := fs.String("exec", "", "shell command run after each write (e.g. 'pkill -HUP mosquitto')")
	log, err := c.start(fs, cfg, args)
	if err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("crl export: --out is required")}
	}
	if *interval < 100*time.Millisecond {
		return usageError{errors.New("crl export: --interval must be at least 100ms")}
	}
	issuer, err := ca.LoadIssuer(cfg.DataDir, cfg.CAFile)
	if err != nil {
		return err
	}
	var fetch func(context.Context) ([]byte, error)
	if *remote != "" {
		url := strings.TrimRight(*remote, "/") + "/crl"
		client := &http.Client{Timeout: 10 * time.Second}
		fetch = func(ctx context.Context) ([]byte, error) {
			_, der, err := revocation.FetchCRL(ctx, client, url, issuer, time.Now())
			return der, err
		}
	} else {
		e, err := c.open(ctx, cfg, log, openStoreNoMigr)
		if err != nil {
			return err
		}
		defer e.close()
		keyID := fmt.Sprintf("%x", issuer.SubjectKeyId)
		fetch = func(ctx context.Context) ([]byte, error) {
			l, err := e.st.LatestCRL(ctx, keyID)
			if err != nil {
				return nil, fmt.Errorf("CRL: %w (is serve running? it publishes the CRL)", err)
			}
			return l.DER, nil
		}
	}
	x, err := crl.NewExporter(crl.ExportConfig{Fetch: fetch, Issuer: issuer, Out: *out, Exec: *execCmd, Interval: *interval, Logger: log})
	if err != nil {
		return err
	}
	if !*watch {
		_, err := x.Once(ctx)
		return err
	}
	return x.Run(ctx)
}
