package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fleetpki/fleetpki/internal/atomicfile"
	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/renewal"
)

// A Keeper holds one identity (a device, or a service such as a broker)
// in a directory and keeps it fresh: on start it loads the key and
// certificate it left there, or enrolls with the credential when there is
// none usable; then it renews over mutual TLS with the current certificate
// at two thirds of each certificate's life, with a new key each time.
//
// Files (the certificate's readers, e.g. Mosquitto, take them from Dir):
// <Base>.key (0600), <Base>.crt, chain.pem (issuing CA and root),
// fullchain.pem (the certificate and the issuing CA, what a TLS server
// sends) and root.pem. Each is replaced atomically; the key last, after
// its certificate, so that a crash in between is repaired on the next
// start (from <Base>.key.new).
type Keeper struct {
	cfg KeeperConfig
	r   *renewal.Renewer[*tls.Certificate]
	// changed is set by an issue that rewrote the files, for Installed.
	changed atomic.Bool
	// roots is the pinned root and chain, as of the last files written.
	chain atomic.Pointer[[]*x509.Certificate]
}

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	Client *Client
	Dir    string
	// Base names the key and certificate files (default "device").
	Base string
	// Credential enrolls the identity when Dir holds no usable certificate
	// (none, expired, or for other names than Request's). Empty: such a
	// start fails.
	Credential string
	// Request is the enrollment: device id (a service's name), profile,
	// DNS names and IP addresses, metadata. Its CSR is made by the Keeper.
	Request EnrollRequest
	// Changed runs after the files were rewritten (not after a start that
	// merely loaded them), e.g. an operator's --exec.
	Changed func(ctx context.Context)
	// RetryEvery is the pause after a failed renewal (default 1 minute).
	RetryEvery time.Duration
	Clock      pki.Clock
	Logger     *slog.Logger
}

// Keep is NewKeeper for an identity at the fleetpki server at serverURL,
// trusted by its root's fingerprint: a service's files are named server.*
// (when the request has names), a device's device.*.
func Keep(ctx context.Context, serverURL, rootFingerprint string, cfg KeeperConfig) (*Keeper, error) {
	cl, err := New(serverURL, rootFingerprint)
	if err != nil {
		return nil, err
	}
	cfg.Client = cl
	if cfg.Base == "" && len(cfg.Request.DNSNames)+len(cfg.Request.IPAddresses) > 0 {
		cfg.Base = "server"
	}
	return NewKeeper(ctx, cfg)
}

// NewKeeper loads the identity in cfg.Dir, or enrolls it; an error means
// there is no certificate to serve with.
func NewKeeper(ctx context.Context, cfg KeeperConfig) (*Keeper, error) {
	if cfg.Client == nil || cfg.Dir == "" {
		return nil, errors.New("client: a keeper needs a client and a directory")
	}
	if cfg.Base == "" {
		cfg.Base = "device"
	}
	if cfg.Clock == nil {
		cfg.Clock = pki.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	k := &Keeper{cfg: cfg}
	name := cfg.Request.DeviceID
	if name == "" {
		name = cfg.Base
	}
	r, err := renewal.New(ctx, renewal.Config[*tls.Certificate]{Name: name, Issue: k.issue, Installed: k.installed,
		RetryEvery: cfg.RetryEvery, Clock: cfg.Clock, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	k.r = r
	return k, nil
}

// Run renews until ctx ends.
func (k *Keeper) Run(ctx context.Context) error { return k.r.Run(ctx) }

// Certificate returns the current certificate and key.
func (k *Keeper) Certificate() *tls.Certificate { return k.r.Current() }

// Leaf returns the current certificate.
func (k *Keeper) Leaf() *x509.Certificate { return k.r.Leaf() }

// Chain returns the issuing CA and the root, as written to chain.pem.
func (k *Keeper) Chain() []*x509.Certificate { return *k.chain.Load() }

// Trust returns the fleetpki chain as a pool (issuing CA and root, for
// verifying device certificates) and the issuing CA itself.
func (k *Keeper) Trust() (*x509.CertPool, *x509.Certificate, error) {
	pool := x509.NewCertPool()
	var issuer *x509.Certificate
	for _, c := range k.Chain() {
		pool.AddCert(c)
		if c.IsCA && c.MaxPathLenZero && issuer == nil {
			issuer = c
		}
	}
	if issuer == nil {
		return nil, nil, fmt.Errorf("client: the chain in %s holds no issuing CA", k.cfg.Dir)
	}
	return pool, issuer, nil
}

// Base names the key and certificate files: <Base>.key, <Base>.crt.
func (k *Keeper) Base() string { return k.cfg.Base }

// GetCertificate serves the current certificate to TLS clients.
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.r.Current(), nil
}

// GetClientCertificate presents the current certificate to TLS servers.
func (k *Keeper) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.r.Current(), nil
}

func (k *Keeper) path(name string) string { return filepath.Join(k.cfg.Dir, name) }

// issue is the renewer's Issue: load or enroll at first, renew after.
func (k *Keeper) issue(ctx context.Context) (*tls.Certificate, *x509.Certificate, error) {
	if k.r == nil {
		if cert, err := k.load(); err == nil {
			k.cfg.Logger.InfoContext(ctx, "certificate loaded", "dir", k.cfg.Dir, "serial", pki.NewSerial(cert.Leaf.SerialNumber),
				"not_after", cert.Leaf.NotAfter)
			return cert, cert.Leaf, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			k.cfg.Logger.WarnContext(ctx, "the certificate in the directory is not usable; enrolling anew", "dir", k.cfg.Dir, "err", err)
		}
		return k.enroll(ctx)
	}
	cur := k.r.Current()
	if !k.cfg.Clock.Now().Before(cur.Leaf.NotAfter) && k.cfg.Credential != "" {
		// Expired (the holder was off too long): mutual TLS cannot renew it.
		return k.enroll(ctx)
	}
	return k.obtain(ctx, func(csr []byte) (*EnrollResponse, error) {
		return k.cfg.Client.Renew(ctx, *cur, csr)
	})
}

func (k *Keeper) enroll(ctx context.Context) (*tls.Certificate, *x509.Certificate, error) {
	if k.cfg.Credential == "" {
		return nil, nil, fmt.Errorf("client: no usable certificate in %s and no enrollment credential", k.cfg.Dir)
	}
	key := NewIdempotencyKey()
	return k.obtain(ctx, func(csr []byte) (*EnrollResponse, error) {
		req := k.cfg.Request
		req.CSR = string(csr)
		return k.cfg.Client.Enroll(ctx, k.cfg.Credential, req, key)
	})
}

// obtain makes a key, writes it aside, gets a certificate for it and then
// puts the files in place: the certificate first, the key last.
func (k *Keeper) obtain(ctx context.Context, get func(csr []byte) (*EnrollResponse, error)) (*tls.Certificate, *x509.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("client: key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("client: key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	newKey := k.path(k.cfg.Base + ".key.new")
	if err := atomicfile.Write(newKey, keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	csr, err := csrFor(priv)
	if err != nil {
		return nil, nil, err
	}
	resp, err := get(csr)
	if err != nil {
		_ = os.Remove(newKey)
		return nil, nil, err
	}
	chain, err := parseCerts([]byte(resp.Chain))
	if err != nil || len(chain) == 0 {
		return nil, nil, fmt.Errorf("client: the answer's chain: %v", err)
	}
	root := k.cfg.Client.Root()
	if root == nil {
		root = chain[len(chain)-1]
	}
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	full := fullChain([]byte(resp.Certificate), chain)
	cert, err := tls.X509KeyPair(full, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("client: the issued certificate does not match the key: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{k.cfg.Base + ".crt", []byte(resp.Certificate)}, {"chain.pem", []byte(resp.Chain)}, {"fullchain.pem", full}, {"root.pem", rootPEM}} {
		if err := atomicfile.Write(k.path(f.name), f.b, 0o644); err != nil {
			return nil, nil, err
		}
	}
	if err := os.Rename(newKey, k.path(k.cfg.Base+".key")); err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	k.chain.Store(&chain)
	k.changed.Store(true)
	return &cert, cert.Leaf, nil
}

// load reads the identity left in Dir. A key written aside whose
// certificate was already put in place (a crash between the two) is moved
// in place first. The certificate must be unexpired and name what the
// request asks for.
func (k *Keeper) load() (*tls.Certificate, error) {
	keyPath, newKey := k.path(k.cfg.Base+".key"), k.path(k.cfg.Base+".key.new")
	crtPEM, err := os.ReadFile(k.path(k.cfg.Base + ".crt"))
	if err != nil {
		return nil, err
	}
	chainPEM, err := os.ReadFile(k.path("chain.pem"))
	if err != nil {
		return nil, err
	}
	chain, err := parseCerts(chainPEM)
	if err != nil || len(chain) == 0 {
		return nil, fmt.Errorf("chain.pem: %v", err)
	}
	full := fullChain(crtPEM, chain)
	if b, err := os.ReadFile(newKey); err == nil {
		if _, err := tls.X509KeyPair(full, b); err == nil {
			if err := os.Rename(newKey, keyPath); err != nil {
				return nil, fmt.Errorf("client: %w", err)
			}
		} else {
			_ = os.Remove(newKey) // a renewal that never finished
		}
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(full, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key and certificate do not match: %w", err)
	}
	if !k.cfg.Clock.Now().Before(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired at %s", cert.Leaf.NotAfter)
	}
	if err := k.matches(cert.Leaf); err != nil {
		return nil, err
	}
	if old, _ := os.ReadFile(k.path("fullchain.pem")); !bytes.Equal(old, full) {
		if err := atomicfile.Write(k.path("fullchain.pem"), full, 0o644); err != nil {
			return nil, err
		}
	}
	k.chain.Store(&chain)
	return &cert, nil
}

// fullChain is what a TLS server sends: the certificate and the chain
// without its root.
func fullChain(crtPEM []byte, chain []*x509.Certificate) []byte {
	full := slices.Clone(crtPEM)
	for _, c := range chain {
		if !isSelfSigned(c) {
			full = append(full, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
	}
	return full
}

// matches checks that a loaded certificate is the one the request asks
// for: the same id, DNS names and IP addresses (a changed --dns enrolls
// anew).
func (k *Keeper) matches(c *x509.Certificate) error {
	req := k.cfg.Request
	var names []string
	for _, n := range append(slices.Clone(req.DNSNames), req.IPAddresses...) {
		if v, err := pki.ValidateServiceName(n); err == nil {
			names = append(names, v)
		}
	}
	have := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	slices.Sort(names)
	slices.Sort(have)
	if !slices.Equal(slices.Compact(names), slices.Compact(have)) {
		return fmt.Errorf("the certificate names %v, the request %v", have, names)
	}
	if req.DeviceID != "" && len(names) == 0 {
		// A device's certificate names its id; a service's, its names.
		if !slices.ContainsFunc(c.URIs, func(u *url.URL) bool { return u.String() == pki.DeviceURI(req.DeviceID) }) {
			return fmt.Errorf("the certificate does not name %q", req.DeviceID)
		}
	}
	return nil
}

func (k *Keeper) installed(ctx context.Context, _ *tls.Certificate) error {
	if k.changed.Swap(false) && k.cfg.Changed != nil {
		k.cfg.Changed(ctx)
	}
	return nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}
