package ocspresponder

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// ResponseStore keeps pre-signed responses.
type ResponseStore interface {
	GetOCSPResponse(ctx context.Context, serial pki.Serial, hash string) (pki.OCSPResponse, error)
	SaveOCSPResponses(ctx context.Context, rs []pki.OCSPResponse) error
}

// PresignStore is what the Presigner needs: stored responses, the
// certificates whose responses are due, and single certificates' status.
type PresignStore interface {
	ResponseStore
	StatusReader
	Lookups
	OCSPStale(ctx context.Context, issuerKeyID, hash string, signedBefore, notAfterAfter time.Time, afterSeq int64, limit int) ([]pki.CertRecord, int64, error)
}

// presignHashes are the CertID hashes responses are pre-signed for: SHA-1,
// which RFC 5019 clients (OpenSSL, Go, Mosquitto, most embedded stacks)
// send, and SHA-256.
var presignHashes = []crypto.Hash{crypto.SHA1, crypto.SHA256}

func hashName(h crypto.Hash) (string, bool) {
	switch h {
	case crypto.SHA1:
		return "sha1", true
	case crypto.SHA256:
		return "sha256", true
	}
	return "", false
}

// PresignConfig configures a Presigner.
type PresignConfig struct {
	Store       PresignStore
	IssuerKeyID string
	// Signer returns the current signer (it rotates).
	Signer   func() *Signer
	Validity time.Duration // default 24 h; responses are re-signed at half of it
	// Sweep is how often every certificate's response is checked (default
	// Validity/8), so that each is re-signed soon after its half-life.
	Sweep  time.Duration
	Clock  pki.Clock
	Logger *slog.Logger
}

// Presigner keeps a signed response for every unexpired certificate in the
// store: signed when the certificate is issued, re-signed as part of its
// revocation, and refreshed at half its validity. A restart, another
// replica or a responder-only process then answers without signing.
type Presigner struct {
	cfg    PresignConfig
	issued chan pki.CertRecord
}

// NewPresigner checks cfg.
func NewPresigner(cfg PresignConfig) (*Presigner, error) {
	if cfg.Store == nil || cfg.Signer == nil || cfg.IssuerKeyID == "" {
		return nil, errors.New("ocsp presigner: Store, Signer and IssuerKeyID are required")
	}
	if cfg.Validity <= 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.Sweep <= 0 {
		cfg.Sweep = cfg.Validity / 8
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Presigner{cfg: cfg, issued: make(chan pki.CertRecord, 4096)}, nil
}

// Issued queues a newly issued certificate for signing; it never blocks
// issuance (a full queue leaves the certificate to the next sweep).
func (p *Presigner) Issued(rec pki.CertRecord) {
	select {
	case p.issued <- rec:
	default:
	}
}

// sign signs rec's responses for the hashes, at the status rec states.
func (p *Presigner) sign(rec pki.CertRecord, now time.Time, hashes []crypto.Hash) ([]pki.OCSPResponse, error) {
	st := Status{Serial: rec.Serial.BigInt()}
	switch {
	case rec.Status == pki.CertRevoked && rec.RevokedAt != nil:
		st.Revoked, st.RevokedAt, st.Reason = true, *rec.RevokedAt, rec.Reason
	default:
		st.Good = true
	}
	this, next := answerTimes(now, p.cfg.Validity)
	signer := p.cfg.Signer()
	out := make([]pki.OCSPResponse, 0, len(hashes))
	for _, h := range hashes {
		der, err := signer.Sign(st, h, this, next)
		if err != nil {
			return nil, fmt.Errorf("presign %s: %w", rec.Serial, err)
		}
		name, _ := hashName(h)
		out = append(out, pki.OCSPResponse{Serial: rec.Serial, Hash: name, Status: rec.Status, DER: der,
			ThisUpdate: this, NextUpdate: next})
	}
	return out, nil
}

// Resign signs serial's responses from its stored status now (after a
// revocation) and stores them.
func (p *Presigner) Resign(ctx context.Context, serial pki.Serial) error {
	rec, err := p.cfg.Store.GetCertificate(ctx, serial)
	if err != nil {
		return fmt.Errorf("presign %s: %w", serial, err)
	}
	rs, err := p.sign(rec, p.cfg.Clock.Now(), presignHashes)
	if err != nil {
		return err
	}
	return p.cfg.Store.SaveOCSPResponses(ctx, rs)
}

// ResignAll signs the serials' responses from their stored status now and
// stores them in one transaction.
func (p *Presigner) ResignAll(ctx context.Context, serials []pki.Serial) error {
	now := p.cfg.Clock.Now()
	var batch []pki.OCSPResponse
	for _, serial := range serials {
		rec, err := p.cfg.Store.GetCertificate(ctx, serial)
		if err != nil {
			return fmt.Errorf("presign %s: %w", serial, err)
		}
		rs, err := p.sign(rec, now, presignHashes)
		if err != nil {
			return err
		}
		batch = append(batch, rs...)
	}
	return p.cfg.Store.SaveOCSPResponses(ctx, batch)
}

// presignBatch bounds one sweep query and one store transaction.
const presignBatch = 500

// SweepOnce signs every response that is missing, past half its validity,
// or out of date with its certificate's status, for each pre-signed hash;
// it returns how many responses it signed.
func (p *Presigner) SweepOnce(ctx context.Context) (int, error) {
	now := p.cfg.Clock.Now()
	// thisUpdate is backdated (answerTimes): due once half the validity is spent.
	signedBefore, _ := answerTimes(now.Add(-p.cfg.Validity/2), p.cfg.Validity)
	total := 0
	for _, h := range presignHashes {
		name, _ := hashName(h)
		for cursor := int64(0); ; {
			recs, next, err := p.cfg.Store.OCSPStale(ctx, p.cfg.IssuerKeyID, name, signedBefore, now, cursor, presignBatch)
			if err != nil {
				return total, fmt.Errorf("presign sweep: %w", err)
			}
			if len(recs) == 0 {
				break
			}
			var batch []pki.OCSPResponse
			for _, rec := range recs {
				rs, err := p.sign(rec, now, []crypto.Hash{h})
				if err != nil {
					return total, err
				}
				batch = append(batch, rs...)
			}
			if err := p.cfg.Store.SaveOCSPResponses(ctx, batch); err != nil {
				return total, fmt.Errorf("presign sweep: %w", err)
			}
			total += len(batch)
			cursor = next
		}
	}
	return total, nil
}

// issuedHashes are signed at issuance, on the enrollment's heels; the other
// hashes follow in a sweep soon after (sweepSoon), off the hot path.
var issuedHashes = []crypto.Hash{crypto.SHA1}

// sweepSoon is how long after issuance the remaining hashes are signed.
const sweepSoon = 30 * time.Second

// Run sweeps at start, every Sweep and soon after issuance, signs issued
// certificates' SHA-1 responses as they come (in one transaction per
// batch), and re-signs revoked ones at once, until ctx ends.
func (p *Presigner) Run(ctx context.Context, revocations <-chan pki.RevocationEvent) error {
	sweep := time.NewTimer(0)
	defer sweep.Stop()
	pending := false // a sweep is due within sweepSoon
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			n, err := p.SweepOnce(ctx)
			if err != nil && ctx.Err() == nil {
				p.cfg.Logger.ErrorContext(ctx, "OCSP pre-signing sweep failed; retrying in a minute", "err", err)
				sweep.Reset(time.Minute)
				continue
			}
			if n > 0 {
				p.cfg.Logger.InfoContext(ctx, "OCSP responses pre-signed", "responses", n)
			}
			sweep.Reset(p.cfg.Sweep)
			pending = false
		case ev, ok := <-revocations:
			if !ok {
				revocations = nil
				continue
			}
			// Take whatever else is waiting (a bulk revocation sends
			// thousands): one transaction per batch, not per serial.
			serials := []pki.Serial{ev.Serial}
		drain:
			for len(serials) < presignBatch {
				select {
				case ev, ok := <-revocations:
					if !ok {
						revocations = nil
						break drain
					}
					serials = append(serials, ev.Serial)
				default:
					break drain
				}
			}
			if err := p.ResignAll(ctx, serials); err != nil && ctx.Err() == nil {
				// The sweep finds the stale responses (their status differs) later.
				p.cfg.Logger.ErrorContext(ctx, "re-signing revoked certificates' OCSP responses failed", "certificates", len(serials), "err", err)
			}
		case rec := <-p.issued:
			p.signIssued(ctx, rec)
			if !pending {
				sweep.Reset(sweepSoon)
				pending = true
			}
		}
	}
}

// signIssued signs rec and whatever else was issued meanwhile, in one batch.
func (p *Presigner) signIssued(ctx context.Context, first pki.CertRecord) {
	now := p.cfg.Clock.Now()
	var batch []pki.OCSPResponse
	add := func(rec pki.CertRecord) {
		rs, err := p.sign(rec, now, issuedHashes)
		if err != nil {
			p.cfg.Logger.ErrorContext(ctx, "pre-signing a new certificate's OCSP response failed", "serial", rec.Serial, "err", err)
			return
		}
		batch = append(batch, rs...)
	}
	add(first)
	for len(batch) < 2*presignBatch {
		select {
		case rec := <-p.issued:
			add(rec)
			continue
		default:
		}
		break
	}
	if err := p.cfg.Store.SaveOCSPResponses(ctx, batch); err != nil && ctx.Err() == nil {
		p.cfg.Logger.ErrorContext(ctx, "storing pre-signed OCSP responses failed; the sweep retries", "err", err)
	}
}
