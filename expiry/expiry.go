// Package expiry tells fleet back-ends which devices' certificates are
// about to expire, so that they can have them renewed: a metric of how many
// expire within the window, and, when a webhook is configured, one signed
// notice per expiring certificate, retried with backoff and kept as a dead
// letter when every attempt failed.
//
// A notice is a POST of JSON ({"event": "certificate.expiring", …}) with
// the header Fleetpki-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>" with the shared secret>; receivers check it with Verify.
package expiry

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetpki/fleetpki/pki"
)

// Store is what the notifier reads and records.
type Store interface {
	QueueExpiryNotices(ctx context.Context, now, before time.Time) (int64, error)
	ExpiryNotices(ctx context.Context, state pki.NoticeState, due time.Time, max int) ([]pki.ExpiryNotice, error)
	UpdateExpiryNotice(ctx context.Context, e pki.ExpiryNotice) error
	CountExpiring(ctx context.Context, now, before time.Time) (int64, error)
}

// Header carries a notice's signature.
const Header = "Fleetpki-Signature"

// DefaultBackoff is the pause before each retry; after the last, a notice
// that still fails is dead.
var DefaultBackoff = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour}

// Config configures a Notifier.
type Config struct {
	Store Store
	// Window: certificates expiring within it are announced (default 30 days).
	Window time.Duration
	// URL of the webhook; empty exports the metric only.
	URL    string
	Secret []byte
	// Every is the pause between rounds (default 1 minute).
	Every   time.Duration
	Backoff []time.Duration
	Client  *http.Client
	Clock   pki.Clock
	Logger  *slog.Logger
	// Registerer receives the metrics (may be nil).
	Registerer prometheus.Registerer
}

// Notifier announces expiring certificates.
type Notifier struct {
	cfg      Config
	expiring prometheus.Gauge
	results  *prometheus.CounterVec
}

// Notice is the body of a webhook call.
type Notice struct {
	Event    string    `json:"event"`
	DeviceID string    `json:"device_id"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Attempt  int       `json:"attempt"`
}

// New checks cfg.
func New(cfg Config) (*Notifier, error) {
	if cfg.Store == nil {
		return nil, errors.New("expiry: a store is required")
	}
	if cfg.URL != "" && len(cfg.Secret) < 16 {
		return nil, pki.Errorf(pki.Invalid, "the expiry webhook needs a secret of at least 16 bytes to sign its notices")
	}
	if cfg.Window <= 0 {
		cfg.Window = 30 * 24 * time.Hour
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Minute
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg,
		expiring: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetpki_certificates_expiring",
			Help: "Valid certificates that expire within the expiry window, of devices not renewed beyond it."}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetpki_expiry_notices_total",
			Help: "Expiry webhook attempts by result: delivered, failed (to be retried), dead (given up, kept)."}, []string{"result"})}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{n.expiring, n.results} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

// Run runs a round every cfg.Every until ctx ends; a failed round is
// logged and the next one tries again.
func (n *Notifier) Run(ctx context.Context) error {
	t := time.NewTicker(n.cfg.Every)
	defer t.Stop()
	for {
		if err := n.RunOnce(ctx); err != nil && ctx.Err() == nil {
			n.cfg.Logger.WarnContext(ctx, "expiry round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce updates the metric and, with a webhook, queues the newly
// expiring certificates and attempts the due notices.
func (n *Notifier) RunOnce(ctx context.Context) error {
	now := n.cfg.Clock.Now()
	before := now.Add(n.cfg.Window)
	count, err := n.cfg.Store.CountExpiring(ctx, now, before)
	if err != nil {
		return err
	}
	n.expiring.Set(float64(count))
	if n.cfg.URL == "" {
		return nil
	}
	if _, err := n.cfg.Store.QueueExpiryNotices(ctx, now, before); err != nil {
		return err
	}
	due, err := n.cfg.Store.ExpiryNotices(ctx, pki.NoticePending, now, pki.MaxLimit)
	if err != nil {
		return err
	}
	for _, e := range due {
		if err := n.deliver(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// deliver makes one attempt and records its outcome.
func (n *Notifier) deliver(ctx context.Context, e pki.ExpiryNotice) error {
	e.Attempts++
	body, _ := json.Marshal(Notice{Event: "certificate.expiring", DeviceID: e.DeviceID, Serial: string(e.Serial), NotAfter: e.NotAfter.UTC(), Attempt: e.Attempts})
	now := n.cfg.Clock.Now()
	err := n.post(ctx, body, now)
	e.UpdatedAt = now
	switch {
	case err == nil:
		e.State, e.LastError = pki.NoticeDelivered, ""
		n.results.WithLabelValues("delivered").Inc()
	case e.Attempts > len(n.cfg.Backoff):
		e.State, e.LastError = pki.NoticeDead, err.Error()
		n.results.WithLabelValues("dead").Inc()
		n.cfg.Logger.ErrorContext(ctx, "expiry notice given up after every retry; kept as a dead letter", "device_id", e.DeviceID,
			"serial", e.Serial, "attempts", e.Attempts, "err", err)
	default:
		e.LastError, e.NextAttempt = err.Error(), now.Add(n.cfg.Backoff[e.Attempts-1])
		n.results.WithLabelValues("failed").Inc()
		n.cfg.Logger.WarnContext(ctx, "expiry notice failed; it will be retried", "device_id", e.DeviceID, "attempts", e.Attempts,
			"retry_at", e.NextAttempt, "err", err)
	}
	return n.cfg.Store.UpdateExpiryNotice(ctx, e)
}

func (n *Notifier) post(ctx context.Context, body []byte, now time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(Header, Sign(n.cfg.Secret, body, now))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the webhook answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// Sign is the signature header of body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "."))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a notice's signature header, and that it was signed within
// tolerance of now (a replayed old notice fails).
func Verify(secret, body []byte, header string, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("expiry: a malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("expiry: the notice was signed too long ago")
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(secret, ts, body)) {
		return errors.New("expiry: the signature does not match")
	}
	return nil
}
