package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// crlExport writes the current CRL (PEM) to a file, atomically, for brokers
// that read a crlfile (Mosquitto and the like); with --watch it rewrites the
// file on every change and runs --exec, so the broker reloads (SIGHUP)
// without a restart. The CRL comes from the local store or from a remote
// fleetpki (--url); either way its signature is checked against the CA
// chain before it is written.
func (c *cli) crlExport(ctx context.Context, args []string) error {
	cfg := &config{}
	fs := c.newFlags("crl export", cfg)
	out := fs.String("out", "", "file to write the CRL to (PEM)")
	remote := fs.String("url", "", "base URL of a remote fleetpki's public listener (e.g. http://pki:8080); empty reads the local store")
	watch := fs.Bool("watch", false, "keep running and rewrite the file whenever the CRL changes")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch looks for a new CRL")
	execCmd := fs.String("exec", "", "shell command run after each write (e.g. 'pkill -HUP mosquitto')")
	log, err := c.start(fs, cfg, args, false)
	if err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("crl export: --out is required")}
	}
	if *interval < 100*time.Millisecond {
		return usageError{errors.New("crl export: --interval must be at least 100ms")}
	}
	issuer, err := crlIssuer(cfg.DataDir, cfg.CAFile)
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
		st, err := openStore(ctx, cfg, log, true)
		if err != nil {
			return err
		}
		defer st.Close()
		fetch = func(ctx context.Context) ([]byte, error) { return localCRL(ctx, st, issuer) }
	}

	var last []byte
	for {
		der, err := fetch(ctx)
		if err == nil {
			_, err = revocation.VerifyCRL(der, issuer, time.Now())
		}
		switch {
		case err != nil && !*watch:
			return err
		case err != nil:
			log.WarnContext(ctx, "CRL not updated", "err", err)
		case !bytes.Equal(der, last):
			if err := writeAtomic(*out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
				return err
			}
			last = der
			crl, _ := x509.ParseRevocationList(der)
			log.InfoContext(ctx, "CRL written", "file", *out, "number", crl.Number, "entries", len(crl.RevokedCertificateEntries))
			if *execCmd != "" {
				runHook(ctx, log, *execCmd)
			}
		}
		if !*watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// crlIssuer returns the issuing CA certificate, from --ca-file or the data directory.
func crlIssuer(dataDir, caFile string) (*x509.Certificate, error) {
	if caFile == "" {
		chain, err := ca.LoadChain(dataDir)
		if err != nil {
			return nil, fmt.Errorf("crl export: no CA chain in --data-dir %q; give --ca-file: %w", dataDir, err)
		}
		return chain[0], nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", unwrapPath(err))
	}
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil && c.IsCA && c.KeyUsage&x509.KeyUsageCRLSign != 0 && c.MaxPathLenZero {
			return c, nil // the issuing CA: it signs device certificates and their CRL
		}
	}
	return nil, fmt.Errorf("--ca-file %q holds no issuing CA certificate (pathlen 0, cRLSign)", caFile)
}

// crlStore is what a local export reads.
type crlStore interface {
	LatestCRL(ctx context.Context, issuerKeyID string) (pki.CRL, error)
}

func localCRL(ctx context.Context, st crlStore, issuer *x509.Certificate) ([]byte, error) {
	c, err := st.LatestCRL(ctx, fmt.Sprintf("%x", issuer.SubjectKeyId))
	if err != nil {
		return nil, fmt.Errorf("CRL: %w (is serve running? it publishes the CRL)", err)
	}
	return c.DER, nil
}

// writeAtomic writes data to path through a temporary file in the same
// directory and a rename, so a reader sees the old file or the new one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// runHook runs the --exec command; its failure is logged, not fatal: the
// CRL file is written, and the next change runs the hook again.
func runHook(ctx context.Context, log *slog.Logger, command string) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	out, err := cmd.CombinedOutput()
	if err != nil {
		log.WarnContext(ctx, "--exec failed", "command", command, "err", err, "output", strings.TrimSpace(string(out)))
		return
	}
	log.InfoContext(ctx, "--exec ran", "command", command)
}
