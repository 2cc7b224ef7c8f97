package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// memStore is an in-memory Store with the semantics the real backends
// promise: unique serials, conditional revocation, audit events only for
// changes. It exists to test the CA's logic; store/storetest covers the
// real backends.
type memStore struct {
	mu      sync.Mutex
	certs   map[pki.Serial]pki.CertRecord
	devices map[string]pki.Device
	audit   []pki.AuditEvent
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{certs: map[pki.Serial]pki.CertRecord{}, devices: map[string]pki.Device{}}
}

func (m *memStore) InsertCertificate(_ context.Context, cert pki.CertRecord, dev pki.Device, ev pki.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.certs[cert.Serial]; dup {
		return pki.Errorf(pki.Conflict, "serial %s exists", cert.Serial)
	}
	m.certs[cert.Serial] = cert
	if old, ok := m.devices[dev.ID]; ok {
		dev.CreatedAt = old.CreatedAt
		if dev.Metadata == nil {
			dev.Metadata = old.Metadata
		}
	}
	m.devices[dev.ID] = dev
	m.appendLocked(ev)
	return nil
}

func (m *memStore) GetCertificate(_ context.Context, serial pki.Serial) (pki.CertRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.certs[serial]
	if !ok {
		return pki.CertRecord{}, pki.Errorf(pki.NotFound, "no certificate %s", serial)
	}
	return c, nil
}

func (m *memStore) RevokeCertificate(_ context.Context, serial pki.Serial, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) (pki.CertRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.certs[serial]
	if !ok {
		return pki.CertRecord{}, false, pki.Errorf(pki.NotFound, "no certificate %s", serial)
	}
	if c.Status == pki.CertRevoked {
		return c, false, nil
	}
	c.Status, c.Reason, c.RevokedAt = pki.CertRevoked, reason, &at
	m.certs[serial] = c
	m.appendLocked(ev)
	return c, true, nil
}

func (m *memStore) RevokeDevice(_ context.Context, deviceID string, reason pki.RevocationReason, at time.Time, ev pki.AuditEvent) ([]pki.CertRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dev, ok := m.devices[deviceID]
	if !ok {
		return nil, pki.Errorf(pki.NotFound, "no device %q", deviceID)
	}
	var out []pki.CertRecord
	for s, c := range m.certs {
		if c.DeviceID != deviceID || c.StatusAt(at) != pki.CertValid {
			continue
		}
		c.Status, c.Reason, c.RevokedAt = pki.CertRevoked, reason, &at
		m.certs[s] = c
		out = append(out, c)
	}
	dev.Status = pki.DeviceRevoked
	m.devices[deviceID] = dev
	if len(out) > 0 {
		m.appendLocked(ev)
	}
	return out, nil
}

// ListCertificates supports what the CA asks: a device's valid certificates.
func (m *memStore) ListCertificates(_ context.Context, f pki.CertFilter) (pki.Page[pki.CertRecord], error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p pki.Page[pki.CertRecord]
	for _, c := range m.certs {
		if (f.DeviceID == "" || c.DeviceID == f.DeviceID) && (f.Status == "" || c.StatusAt(f.Now) == f.Status) {
			p.Items = append(p.Items, c)
		}
	}
	if f.Limit > 0 && len(p.Items) > f.Limit {
		p.Items = p.Items[:f.Limit]
	}
	return p, nil
}

func (m *memStore) AppendAudit(_ context.Context, ev pki.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appendLocked(ev)
	return nil
}

func (m *memStore) appendLocked(ev pki.AuditEvent) {
	ev.Seq = int64(len(m.audit) + 1)
	m.audit = append(m.audit, ev)
}

func (m *memStore) counts() (certs, events int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.certs), len(m.audit)
}

func (m *memStore) events() []pki.AuditEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]pki.AuditEvent(nil), m.audit...)
}

// failingStore fails every commit, as a database that went away would.
type failingStore struct {
	*memStore
	err error
}

func (f failingStore) InsertCertificate(context.Context, pki.CertRecord, pki.Device, pki.AuditEvent) error {
	return f.err
}

// collidingStore reports a serial collision for the first n inserts.
type collidingStore struct {
	*memStore
	mu      sync.Mutex
	n       int
	serials []pki.Serial // serials offered, in order
}

func (c *collidingStore) InsertCertificate(ctx context.Context, cert pki.CertRecord, dev pki.Device, ev pki.AuditEvent) error {
	c.mu.Lock()
	c.serials = append(c.serials, cert.Serial)
	collide := c.n > 0
	c.n--
	c.mu.Unlock()
	if collide {
		return pki.Errorf(pki.Conflict, "serial %s exists", cert.Serial)
	}
	return c.memStore.InsertCertificate(ctx, cert, dev, ev)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Hierarchies are expensive (RSA-3072 keys), so each algorithm's is made
// once per test binary in a directory TestMain removes.
var (
	hierarchyRoot string
	hierarchyOnce = map[KeyAlgorithm]*sync.Once{ECDSAP256: {}, ECDSAP384: {}, RSA3072: {}}
	hierarchies   = map[KeyAlgorithm]*Hierarchy{}
	hierarchyDirs = map[KeyAlgorithm]string{}
	hierarchyErrs = map[KeyAlgorithm]error{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetpki-ca-test-")
	if err != nil {
		panic(err)
	}
	hierarchyRoot = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// sharedHierarchy returns the test binary's hierarchy for alg.
func sharedHierarchy(t testing.TB, alg KeyAlgorithm) *Hierarchy {
	t.Helper()
	hierarchyOnce[alg].Do(func() {
		dir, err := os.MkdirTemp(hierarchyRoot, string(alg)+"-")
		hierarchyDirs[alg] = dir
		if err == nil {
			hierarchies[alg], err = Init(context.Background(), InitOptions{DataDir: dir, Algorithm: alg, Name: "fleetpki test"})
		}
		hierarchyErrs[alg] = err
	})
	if err := hierarchyErrs[alg]; err != nil {
		t.Fatalf("init %s hierarchy: %v", alg, err)
	}
	return hierarchies[alg]
}

const testPublicURL = "http://127.0.0.1:8080"

// newTestCA returns a CA over the shared P-256 hierarchy and st (a fresh memStore if nil).
func newTestCA(t testing.TB, st Store) *CA {
	t.Helper()
	return newTestCAWith(t, Config{Hierarchy: sharedHierarchy(t, ECDSAP256), Store: st})
}

func newTestCAWith(t testing.TB, cfg Config) *CA {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = newMemStore()
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = testPublicURL
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// Device keys that are slow to make are made once.
var (
	rsa2048Once sync.Once
	rsa2048Key  *rsa.PrivateKey
	rsa1024Once sync.Once
	rsa1024Key  *rsa.PrivateKey
)

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	gen := func(once *sync.Once, k **rsa.PrivateKey) *rsa.PrivateKey {
		once.Do(func() {
			var err error
			if *k, err = rsa.GenerateKey(rand.Reader, bits); err != nil {
				panic(err)
			}
		})
		return *k
	}
	switch bits {
	case 2048:
		return gen(&rsa2048Once, &rsa2048Key)
	case 1024:
		return gen(&rsa1024Once, &rsa1024Key)
	}
	t.Fatalf("no cached RSA-%d key", bits)
	return nil
}

func ecKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCSR returns a PEM CSR signed by key that asks for names the CA must ignore.
func makeCSR(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	evil, _ := url.Parse("urn:fleetpki:device:someone-else")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "admin", Organization: []string{"Evil Corp"}},
		DNSNames:       []string{"evil.example.com"},
		EmailAddresses: []string{"root@example.com"},
		URIs:           []*url.URL{evil},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func issue(t testing.TB, c *CA, deviceID string) *Issued {
	t.Helper()
	iss, err := c.Issue(context.Background(), IssueRequest{DeviceID: deviceID, CSR: makeCSR(t, ecKey(t, elliptic.P256()))})
	if err != nil {
		t.Fatalf("Issue(%q): %v", deviceID, err)
	}
	return iss
}

func isKind(err error, k *pki.Kind) bool { return err != nil && errors.Is(err, k) }
