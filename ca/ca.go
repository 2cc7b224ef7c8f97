package ca

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"

	"github.com/fleetpki/fleetpki/pki"
)

// Store is what the CA needs from persistence. store.Store satisfies it.
type Store interface {
	// InsertCertificate commits a certificate, its device and its audit event
	// in one transaction; a duplicate serial is pki.Conflict.
	InsertCertificate(ctx context.Context, cert pki.CertRecord, dev pki.Device, ev pki.AuditEvent) error
	// GetCertificate returns a certificate or pki.NotFound.
	GetCertificate(ctx context.Context, serial pki.Serial) (pki.CertRecord, error)
	// RevokeCertificate revokes conditionally; changed is false if it was revoked already.
	RevokeCertificate(ctx context.Context, serial pki.Serial, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) (pki.CertRecord, bool, error)
	// RevokeDevice revokes the device's unrevoked, unexpired certificates and returns them.
	RevokeDevice(ctx context.Context, deviceID string, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) ([]pki.CertRecord, error)
	// AppendAudit appends an event that records no other change.
	AppendAudit(ctx context.Context, ev pki.AuditEvent) error
	// ListCertificates lists certificates, newest first.
	ListCertificates(ctx context.Context, f pki.CertFilter) (pki.Page[pki.CertRecord], error)
}

// Config configures a CA.
type Config struct {
	// Hierarchy is the loaded CA hierarchy (Init, Import or LoadHierarchy).
	Hierarchy *Hierarchy
	// Store persists certificates, devices and audit events.
	Store Store
	// PublicURL is the base URL of the plain-HTTP endpoints, written into
	// certificates: OCSP at PublicURL/ocsp, the issuer at
	// PublicURL/ca/intermediate.crt, the CRL at PublicURL/crl.
	PublicURL string
	// ProfilesDir holds extra profiles as *.json files (see ProfileSpec); optional.
	ProfilesDir string
	// Bulk, when set, enables bulk revocation (RevokeMatching).
	Bulk BulkStore
	// MaxValidPerDevice bounds the unexpired, unrevoked certificates one
	// device may hold when it renews (default 3): a device renewing in a
	// loop cannot mint itself an unbounded supply of valid identities.
	MaxValidPerDevice int
	// Clock tells the time; nil means the system clock.
	Clock pki.Clock
	// Logger receives the CA's logs; nil discards them.
	Logger *slog.Logger
}

// publicURLs checks PublicURL and derives the AIA and CDP locations.
func (cfg Config) publicURLs() (urls, error) {
	u, err := url.Parse(cfg.PublicURL)
	switch {
	case cfg.PublicURL == "":
		return urls{}, pki.Errorf(pki.Invalid, "the public URL is not set")
	case err != nil:
		return urls{}, pki.Wrap(pki.Invalid, err, fmt.Sprintf("the public URL %q does not parse", cfg.PublicURL))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return urls{}, pki.Errorf(pki.Invalid, "the public URL %q must be an absolute http:// or https:// URL", cfg.PublicURL)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return urls{}, pki.Errorf(pki.Invalid, "the public URL %q must not carry a query, fragment or user", cfg.PublicURL)
	}
	// OCSP and CRL fetches commonly run over plain HTTP (RFC 5019): an
	// https URL is allowed but would make revocation checking depend on TLS.
	base := strings.TrimRight(u.String(), "/")
	return urls{ocsp: base + "/ocsp", issuer: base + "/ca/intermediate.crt", crl: base + "/crl"}, nil
}

// CA issues, renews and revokes device certificates. It is safe for concurrent use.
type CA struct {
	h           *Hierarchy
	store       Store
	cas         apiv1.CertificateAuthorityService
	profiles    map[string]*profile
	urls        urls
	issuerKeyID string
	clock       pki.Clock
	log         *slog.Logger
	feed        feed
	onIssued    atomic.Pointer[func(pki.CertRecord)]
	maxValid    int
	bulk        BulkStore
	jobs        bulkRunner
}

// OnIssued registers f to be called with each certificate after it
// committed (the OCSP presigner signs its response then); f must not block.
func (c *CA) OnIssued(f func(pki.CertRecord)) { c.onIssued.Store(&f) }

// New checks cfg, compiles the profiles and returns a CA.
func New(ctx context.Context, cfg Config) (*CA, error) {
	if cfg.Hierarchy == nil {
		return nil, pki.Errorf(pki.Invalid, "new CA: no CA hierarchy")
	}
	if cfg.Store == nil {
		return nil, pki.Errorf(pki.Invalid, "new CA: no store")
	}
	u, err := cfg.publicURLs()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxValidPerDevice <= 0 {
		cfg.MaxValidPerDevice = 3
	}
	profiles, err := loadProfiles(cfg.ProfilesDir, u)
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	cas, err := softcas.New(ctx, apiv1.Options{
		Type:             apiv1.SoftCAS,
		CertificateChain: cfg.Hierarchy.Chain(),
		Signer:           cfg.Hierarchy.Signer(),
	})
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	c := &CA{
		h:           cfg.Hierarchy,
		store:       cfg.Store,
		cas:         cas,
		profiles:    profiles,
		urls:        u,
		issuerKeyID: cfg.Hierarchy.IssuerKeyID(),
		clock:       cfg.Clock,
		log:         cfg.Logger,
		maxValid:    cfg.MaxValidPerDevice,
		bulk:        cfg.Bulk,
		jobs:        bulkRunner{queue: make(chan *jobRun)},
	}
	c.feed.log = cfg.Logger
	if left := cfg.Hierarchy.Intermediate().NotAfter.Sub(cfg.Clock.Now()); left < 90*24*time.Hour {
		// Certificates are clamped to the issuer's lifetime, so a CA near
		// its end silently issues ever shorter certificates: say so.
		c.log.WarnContext(ctx, "the issuing CA expires soon; certificates are shortened to its lifetime",
			"not_after", cfg.Hierarchy.Intermediate().NotAfter, "left", left.Round(time.Hour))
	}
	return c, nil
}

// Hierarchy returns the CA hierarchy the CA issues under.
func (c *CA) Hierarchy() *Hierarchy { return c.h }

// Profiles returns the names of the configured profiles, sorted.
func (c *CA) Profiles() []string { return slices.Sorted(maps.Keys(c.profiles)) }

// profile looks a profile up by name ("" is the default).
func (c *CA) profile(name string) (*profile, error) {
	if name == "" {
		name = DefaultProfile
	}
	p, ok := c.profiles[name]
	if !ok {
		return nil, pki.Errorf(pki.Invalid, "unknown profile %q", truncate(name, 64))
	}
	return p, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
