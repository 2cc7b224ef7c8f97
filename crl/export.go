package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"time"

	"github.com/fleetpki/fleetpki/internal/atomicfile"
	"github.com/fleetpki/fleetpki/internal/hook"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/revocation"
)

// ExportConfig configures an Exporter.
type ExportConfig struct {
	// Fetch returns the current CRL (DER): from the local store or a remote
	// fleetpki.
	Fetch func(ctx context.Context) ([]byte, error)
	// Issuer must have signed every CRL written.
	Issuer *x509.Certificate
	// Out is the file written (PEM), atomically.
	Out string
	// Exec, when set, is a shell command run after each write.
	Exec string
	// Interval is how often Run looks for a new CRL (default 2 s).
	Interval time.Duration
	Clock    pki.Clock
	Logger   *slog.Logger
}

// Exporter keeps a CRL file current for brokers that read a crlfile
// (Mosquitto and the like): every CRL is verified against the issuer and
// its nextUpdate before it is written, so a broker is never handed a CRL
// it would reject, or a forged one.
type Exporter struct {
	cfg  ExportConfig
	last []byte
}

// NewExporter checks cfg.
func NewExporter(cfg ExportConfig) (*Exporter, error) {
	if cfg.Fetch == nil || cfg.Issuer == nil || cfg.Out == "" {
		return nil, errors.New("crl export: Fetch, Issuer and Out are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Exporter{cfg: cfg}, nil
}

// Once fetches, verifies and, when it changed, writes the CRL and runs the
// hook; it reports whether it wrote.
func (e *Exporter) Once(ctx context.Context) (bool, error) {
	der, err := e.cfg.Fetch(ctx)
	if err != nil {
		return false, err
	}
	list, err := revocation.VerifyCRL(der, e.cfg.Issuer, e.cfg.Clock.Now())
	if err != nil {
		return false, err
	}
	if bytes.Equal(der, e.last) {
		return false, nil
	}
	if err := atomicfile.Write(e.cfg.Out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return false, err
	}
	e.last = der
	e.cfg.Logger.InfoContext(ctx, "CRL written", "file", e.cfg.Out, "number", list.Number, "entries", len(list.RevokedCertificateEntries))
	if e.cfg.Exec != "" {
		hook.Run(ctx, e.cfg.Logger, e.cfg.Exec)
	}
	return true, nil
}

// Run calls Once every Interval until ctx ends; a failure is logged and
// leaves the file as it was.
func (e *Exporter) Run(ctx context.Context) error {
	for {
		if _, err := e.Once(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.WarnContext(ctx, "CRL not updated", "err", err)
		}
		t := time.NewTimer(e.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
