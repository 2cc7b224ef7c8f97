package client

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// keeperFiles writes what a keeper leaves behind: a root, an issuing CA,
// and a server certificate for names with its key, into dir.
type keeperFiles struct {
	dir         string
	inter       *x509.Certificate
	interKey    *ecdsa.PrivateKey
	chainPEM    []byte
	serial      int64
	notAfterDur time.Duration
}

func newKeeperFiles(t *testing.T) *keeperFiles {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	rootDER, _ := x509.CreateCertificate(rand.Reader, rt, rt, rootKey.Public(), rootKey)
	root, _ := x509.ParseCertificate(rootDER)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "issuing"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	interDER, _ := x509.CreateCertificate(rand.Reader, it, root, interKey.Public(), rootKey)
	inter, _ := x509.ParseCertificate(interDER)
	f := &keeperFiles{dir: t.TempDir(), inter: inter, interKey: interKey, serial: 10, notAfterDur: time.Hour,
		chainPEM: append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: interDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})...)}
	write(t, filepath.Join(f.dir, "chain.pem"), f.chainPEM)
	return f
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue returns a certificate for names and its key, PEM.
func (f *keeperFiles) issue(t *testing.T, names ...string) (crtPEM, keyPEM []byte, serial int64) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(f.serial), Subject: pkix.Name{CommonName: names[0]}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(f.notAfterDur), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.inter, key.Public(), f.interKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), f.serial
}

func (f *keeperFiles) keeper(names ...string) *Keeper {
	req := EnrollRequest{DeviceID: names[0]}
	for _, n := range names {
		if net.ParseIP(n) != nil {
			req.IPAddresses = append(req.IPAddresses, n)
		} else {
			req.DNSNames = append(req.DNSNames, n)
		}
	}
	return &Keeper{cfg: KeeperConfig{Dir: f.dir, Base: "server", Request: req, Clock: pki.SystemClock{}}}
}

// A keeper's start repairs what a crash left: a new key whose certificate
// is in place is moved in; a new key whose renewal never finished is
// dropped; fullchain.pem follows the certificate. It refuses a certificate
// for other names, an expired one, or a key that does not match.
func TestKeeperLoad(t *testing.T) {
	f := newKeeperFiles(t)
	crt, key, serial := f.issue(t, "b1.example", "10.0.0.5")
	write(t, filepath.Join(f.dir, "server.crt"), crt)
	write(t, filepath.Join(f.dir, "server.key"), key)
	c, err := f.keeper("b1.example", "10.0.0.5").load()
	if err != nil || c.Leaf.SerialNumber.Int64() != serial {
		t.Fatalf("load: %v", err)
	}
	full, _ := os.ReadFile(filepath.Join(f.dir, "fullchain.pem"))
	if n := strings.Count(string(full), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("fullchain.pem has %d certificates, want the certificate and the issuing CA", n)
	}

	// Crash after the renewed certificate was written, before its key was
	// moved in.
	crt2, key2, serial2 := f.issue(t, "b1.example", "10.0.0.5")
	write(t, filepath.Join(f.dir, "server.crt"), crt2)
	write(t, filepath.Join(f.dir, "server.key.new"), key2)
	if c, err := f.keeper("b1.example", "10.0.0.5").load(); err != nil || c.Leaf.SerialNumber.Int64() != serial2 {
		t.Fatalf("load after a crash before the key moved: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "server.key")); string(b) != string(key2) {
		t.Fatal("the new key was not moved in")
	}
	if _, err := os.Stat(filepath.Join(f.dir, "server.key.new")); !os.IsNotExist(err) {
		t.Fatal("server.key.new is still there")
	}
	if full2, _ := os.ReadFile(filepath.Join(f.dir, "fullchain.pem")); string(full2) == string(full) {
		t.Fatal("fullchain.pem still holds the old certificate")
	}

	// Crash during a renewal: a key aside, no certificate for it.
	_, orphan, _ := f.issue(t, "b1.example")
	write(t, filepath.Join(f.dir, "server.key.new"), orphan)
	if c, err := f.keeper("b1.example", "10.0.0.5").load(); err != nil || c.Leaf.SerialNumber.Int64() != serial2 {
		t.Fatalf("load with an orphaned new key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "server.key.new")); !os.IsNotExist(err) {
		t.Fatal("the orphaned key was kept")
	}

	// Other names: enroll anew (an error here).
	if _, err := f.keeper("b1.example").load(); err == nil {
		t.Fatal("a certificate for more names than asked was used")
	}
	if _, err := f.keeper("b2.example", "10.0.0.5").load(); err == nil {
		t.Fatal("a certificate for other names was used")
	}
	// A key that does not match.
	write(t, filepath.Join(f.dir, "server.key"), orphan)
	if _, err := f.keeper("b1.example", "10.0.0.5").load(); err == nil {
		t.Fatal("a mismatched key was used")
	}
	// Expired.
	f.notAfterDur = -time.Second
	crt3, key3, _ := f.issue(t, "b1.example", "10.0.0.5")
	write(t, filepath.Join(f.dir, "server.crt"), crt3)
	write(t, filepath.Join(f.dir, "server.key"), key3)
	if _, err := f.keeper("b1.example", "10.0.0.5").load(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired certificate: %v", err)
	}
}
