package rootsign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/ocspresponder"
	"github.com/fleetpki/fleetpki/pki"
)

// Live signing: the root's answers are re-signed daily and live a week,
// as its CRL does.
const (
	liveValidity = 7 * 24 * time.Hour
	livePeriod   = 24 * time.Hour
	// DefaultWarnBefore is how long before the bundle's nextUpdate serve
	// starts warning.
	DefaultWarnBefore = 7 * 24 * time.Hour
	// pollEvery is how often the bundle file is looked at for a new one.
	pollEvery = 30 * time.Second
)

// Config configures a Publisher: Signer (the root key, when serve holds
// it) or else File (a bundle made offline).
type Config struct {
	Root    *x509.Certificate
	Issuing []*x509.Certificate
	Signer  crypto.Signer
	File    string
	// WarnBefore: warn once the bundle's nextUpdate is this close
	// (default DefaultWarnBefore, at most half the bundle's validity).
	WarnBefore time.Duration
	Registerer prometheus.Registerer
	Clock      pki.Clock
	Logger     *slog.Logger
}

// Publisher holds the current bundle and keeps it fresh: re-signing it
// daily (live), or re-reading the file when it changes.
type Publisher struct {
	cfg     Config
	answers *ocspresponder.Static
	cur     atomic.Pointer[Bundle]
	file    []byte // the bundle file's bytes last loaded
	expiry  prometheus.Gauge

	mu     sync.Mutex
	warned time.Time
}

// New loads or signs the first bundle. A missing or bad file is not an
// error: serve runs, says so, and publishes nothing of the root's until a
// good file arrives.
func New(ctx context.Context, cfg Config) (*Publisher, error) {
	if cfg.Root == nil || (cfg.Signer == nil && cfg.File == "") {
		return nil, errors.New("rootsign: a root and either its signer or a bundle file are required")
	}
	if cfg.Signer != nil {
		cfg.File = ""
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WarnBefore <= 0 {
		cfg.WarnBefore = DefaultWarnBefore
	}
	answers, err := ocspresponder.NewStatic(cfg.Root, cfg.Clock)
	if err != nil {
		return nil, err
	}
	answers.Expect(cfg.Issuing...)
	p := &Publisher{cfg: cfg, answers: answers, expiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetpki_root_signed_expiry_timestamp_seconds",
		Help: "When the root's published CRL and OCSP answers about the issuing CAs expire (Unix time; 0: none published). With an offline root, run 'fleetpki root sign' before."})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(p.expiry); err != nil {
			return nil, err
		}
	}
	if err := p.refresh(ctx); err != nil {
		if cfg.Signer != nil {
			return nil, err
		}
		cfg.Logger.ErrorContext(ctx, "no valid root-signed bundle: the root's CRL and OCSP answers about the issuing CA are not published", "file", cfg.File, "err", err)
	}
	p.warn(ctx)
	return p, nil
}

// refresh signs a new bundle (live) or loads the file if it changed.
func (p *Publisher) refresh(ctx context.Context) error {
	if p.cfg.Signer != nil {
		now := p.cfg.Clock.Now()
		answers, err := SignOCSP(p.cfg.Root, p.cfg.Signer, p.cfg.Issuing, nil, now.UTC().Add(-backdate).Truncate(time.Second), now.UTC().Add(liveValidity).Truncate(time.Second))
		if err != nil {
			return err
		}
		return p.install(ctx, &Bundle{OCSP: answers, ThisUpdate: now, NextUpdate: now.Add(liveValidity)})
	}
	b, err := os.ReadFile(p.cfg.File)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s does not exist (copy the bundle 'fleetpki root sign' made there)", p.cfg.File)
		}
		return err
	}
	if bytes.Equal(b, p.file) {
		return nil
	}
	bun, err := Parse(b, p.cfg.Root)
	if err != nil {
		return err
	}
	if cur := p.cur.Load(); cur != nil && !bun.NextUpdate.After(cur.NextUpdate) {
		return fmt.Errorf("the bundle in %s is not newer than the one published (nextUpdate %s)", p.cfg.File, bun.NextUpdate.UTC().Format(time.RFC3339))
	}
	if !p.cfg.Clock.Now().Before(bun.NextUpdate) {
		return fmt.Errorf("the bundle in %s expired at %s", p.cfg.File, bun.NextUpdate.UTC().Format(time.RFC3339))
	}
	p.file = b
	return p.install(ctx, bun)
}

func (p *Publisher) install(ctx context.Context, bun *Bundle) error {
	if err := p.answers.Set(bun.OCSP); err != nil {
		return err
	}
	p.cur.Store(bun)
	p.expiry.Set(float64(bun.NextUpdate.Unix()))
	p.cfg.Logger.InfoContext(ctx, "root-signed CRL and OCSP answers published", "ocsp_answers", len(bun.OCSP), "crl", bun.CRL != nil,
		"next_update", bun.NextUpdate.UTC().Format(time.RFC3339), "live", p.cfg.Signer != nil)
	return nil
}

// Run keeps the bundle fresh until ctx ends, and warns as it nears its end.
func (p *Publisher) Run(ctx context.Context) error {
	every, last := pollEvery, p.cfg.Clock.Now()
	if p.cfg.Signer != nil {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := p.cfg.Clock.Now()
		if p.cfg.Signer == nil || now.Sub(last) >= livePeriod || p.cur.Load() == nil {
			if err := p.refresh(ctx); err != nil {
				p.cfg.Logger.ErrorContext(ctx, "the root-signed bundle was not replaced", "err", err)
			} else {
				last = now
			}
		}
		p.warn(ctx)
	}
}

// Warning is the message operators should see (logs, the UI), or "".
func (p *Publisher) Warning() string {
	bun := p.cur.Load()
	now := p.cfg.Clock.Now()
	switch {
	case bun == nil:
		return "The root's CRL and OCSP answers about the issuing CA are not published: copy a bundle made by 'fleetpki root sign' to " + p.cfg.File + "."
	case !now.Before(bun.NextUpdate):
		return fmt.Sprintf("The root's CRL and OCSP answers expired at %s and are no longer served: run 'fleetpki root sign' on the offline machine.",
			bun.NextUpdate.UTC().Format(time.RFC3339))
	}
	warnAt := min(p.cfg.WarnBefore, bun.NextUpdate.Sub(bun.ThisUpdate)/2)
	if left := bun.NextUpdate.Sub(now); left <= warnAt {
		return fmt.Sprintf("The root's CRL and OCSP answers expire at %s (in %s): run 'fleetpki root sign' on the offline machine and copy the bundle to %s.",
			bun.NextUpdate.UTC().Format(time.RFC3339), left.Round(time.Minute), p.cfg.File)
	}
	return ""
}

// warn logs the warning, at most hourly.
func (p *Publisher) warn(ctx context.Context) {
	msg := p.Warning()
	if msg == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := p.cfg.Clock.Now(); now.Sub(p.warned) >= time.Hour {
		p.warned = now
		p.cfg.Logger.WarnContext(ctx, msg)
	}
}

// Answers is the OCSP source of the root's answers about the issuing CAs,
// for the responder to consult after the issuing CA's (ocspresponder.Chain).
func (p *Publisher) Answers() ocspresponder.Source { return p.answers }

// OfflineCRL serves /crl/root from the bundle of an offline root; nil when
// serve holds the root key and its CRL updater publishes the root's CRL.
func (p *Publisher) OfflineCRL() http.Handler {
	if p.cfg.Signer != nil {
		return nil
	}
	return p.CRLHandler()
}

// CRLHandler serves the bundle's root CRL (DER) until its nextUpdate; 503
// when there is none or it expired.
func (p *Publisher) CRLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bun := p.cur.Load()
		if bun == nil || bun.CRL == nil || !p.cfg.Clock.Now().Before(bun.CRLInfo.NextUpdate) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, "no current root CRL: the offline root has not signed a new one", http.StatusServiceUnavailable)
			return
		}
		crl.Serve(w, r, bun.CRLInfo, false)
	})
}
