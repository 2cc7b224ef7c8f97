package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

func TestInitCreatesHierarchy(t *testing.T) {
	h := sharedHierarchy(t, ECDSAP256)
	root, inter := h.Root(), h.Intermediate()

	if !root.IsCA || !bytes.Equal(root.RawIssuer, root.RawSubject) || root.CheckSignatureFrom(root) != nil {
		t.Error("root is not a self-signed CA")
	}
	if got := root.NotAfter.Sub(root.NotBefore); got < rootLifetime || got > rootLifetime+2*backdate {
		t.Errorf("root lifetime = %v, want about %v", got, rootLifetime)
	}
	if !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Errorf("intermediate: IsCA=%v MaxPathLen=%d MaxPathLenZero=%v, want CA with pathLen 0", inter.IsCA, inter.MaxPathLen, inter.MaxPathLenZero)
	}
	if inter.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("intermediate key usage = %b, want certSign|cRLSign", inter.KeyUsage)
	}
	if len(inter.SubjectKeyId) == 0 || !bytes.Equal(inter.AuthorityKeyId, root.SubjectKeyId) {
		t.Error("intermediate lacks SKI or its AKI is not the root's SKI")
	}
	if inter.CheckSignatureFrom(root) != nil {
		t.Error("intermediate is not signed by the root")
	}
	if got := inter.NotAfter.Sub(inter.NotBefore); got < intermediateLifetime || got > intermediateLifetime+2*backdate {
		t.Errorf("intermediate lifetime = %v, want about %v", got, intermediateLifetime)
	}
	sum := sha256.Sum256(root.Raw)
	if h.RootFingerprint() != hex.EncodeToString(sum[:]) {
		t.Errorf("RootFingerprint = %s, want %x", h.RootFingerprint(), sum)
	}
	chain, err := parseChainPEM(h.ChainPEM())
	if err != nil || len(chain) != 2 || !chain[0].Equal(inter) || !chain[1].Equal(root) {
		t.Errorf("ChainPEM is not intermediate then root (err %v)", err)
	}
	if !h.Signer().Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(inter.PublicKey) {
		t.Error("Signer is not the intermediate's key")
	}
}

func TestInitTwiceConflicts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Init(ctx, InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "ca", chainFile))
	_, err := Init(ctx, InitOptions{DataDir: dir})
	if !isKind(err, pki.Conflict) {
		t.Fatalf("second Init: err = %v, want pki.Conflict", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca", chainFile))
	if !bytes.Equal(before, after) {
		t.Error("second Init changed the existing hierarchy")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".ca-staging-*")); len(leftovers) > 0 {
		t.Errorf("staging directories left behind: %v", leftovers)
	}
}

func TestInitRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string]InitOptions{
		"invalid/no data dir":        {},
		"invalid/unknown algorithm":  {DataDir: t.TempDir(), Algorithm: "dsa-1024"},
		"invalid/control char name":  {DataDir: t.TempDir(), Name: "a\nb"},
		"invalid/name over 48 bytes": {DataDir: t.TempDir(), Name: strings.Repeat("n", 49)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Init(context.Background(), opts); !isKind(err, pki.Invalid) {
				t.Errorf("err = %v, want pki.Invalid", err)
			}
		})
	}
}

func TestLoadHierarchy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	password := []byte("correct horse battery staple")
	clock := &fakeClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	made, err := Init(ctx, InitOptions{DataDir: dir, Password: password, Name: "Acme Fleet", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.now.Add(-backdate); !made.Root().NotBefore.Equal(want) {
		t.Errorf("root NotBefore = %v, want %v (from the injected clock)", made.Root().NotBefore, want)
	}
	if got := made.Intermediate().Subject.CommonName; got != "Acme Fleet Issuing CA" {
		t.Errorf("intermediate CN = %q", got)
	}

	t.Run("ok/same certificates", func(t *testing.T) {
		h, err := LoadHierarchy(ctx, dir, password)
		if err != nil {
			t.Fatal(err)
		}
		if h.RootFingerprint() != made.RootFingerprint() || !h.Intermediate().Equal(made.Intermediate()) {
			t.Error("loaded hierarchy differs from the created one")
		}
		if !bytes.Equal(h.ChainPEM(), made.ChainPEM()) {
			t.Error("ChainPEM differs after loading")
		}
	})
	t.Run("ok/key files are 0600 and encrypted", func(t *testing.T) {
		for _, name := range []string{intermediateKey, rootKeyFile} {
			path := filepath.Join(dir, "ca", name)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode = %o, want 600", name, fi.Mode().Perm())
			}
			b, _ := os.ReadFile(path)
			if !isEncryptedKey(b) {
				t.Errorf("%s is not encrypted", name)
			}
		}
		if fi, _ := os.Stat(filepath.Join(dir, "ca")); fi.Mode().Perm() != 0o700 {
			t.Errorf("ca directory mode = %o, want 700", fi.Mode().Perm())
		}
	})
	t.Run("ok/every algorithm, unencrypted", func(t *testing.T) {
		for _, alg := range []KeyAlgorithm{ECDSAP256, ECDSAP384, RSA3072} {
			made := sharedHierarchy(t, alg)
			h, err := LoadHierarchy(ctx, hierarchyDirs[alg], nil)
			if err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			if h.RootFingerprint() != made.RootFingerprint() || keyName(h.Signer().Public()) != keyName(made.Signer().Public()) {
				t.Errorf("%s: loaded hierarchy differs", alg)
			}
		}
	})
	t.Run("unauthenticated/wrong password", func(t *testing.T) {
		_, err := LoadHierarchy(ctx, dir, []byte("wrong"))
		if !isKind(err, pki.Unauthenticated) || !strings.Contains(err.Error(), "wrong password") {
			t.Errorf("err = %v, want pki.Unauthenticated saying wrong password", err)
		}
	})
	t.Run("unauthenticated/missing password", func(t *testing.T) {
		_, err := LoadHierarchy(ctx, dir, nil)
		if !isKind(err, pki.Unauthenticated) || !strings.Contains(err.Error(), "password is required") {
			t.Errorf("err = %v, want pki.Unauthenticated saying a password is required", err)
		}
	})
	t.Run("not found/empty data dir", func(t *testing.T) {
		if _, err := LoadHierarchy(ctx, t.TempDir(), nil); !isKind(err, pki.NotFound) {
			t.Errorf("err = %v, want pki.NotFound", err)
		}
	})
	t.Run("invalid/key readable by others", func(t *testing.T) {
		other := t.TempDir()
		if _, err := Init(ctx, InitOptions{DataDir: other}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(other, "ca", intermediateKey), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHierarchy(ctx, other, nil); !isKind(err, pki.Invalid) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("err = %v, want pki.Invalid asking for chmod 600", err)
		}
	})
}

// externalCA builds a root and an intermediate the way another tool would:
// plain crypto/x509, its own subject names and serials, an SEC 1 key file.
func externalCA(t *testing.T) (chainPEM, keyPEM []byte, root, inter *x509.Certificate) {
	t.Helper()
	rootKey, interKey := ecKey(t, elliptic.P384()), ecKey(t, elliptic.P256())
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1001), Subject: pkix.Name{Country: []string{"DE"}, Organization: []string{"Elsewhere"}, CommonName: "Elsewhere Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(rootDER)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1002), Subject: pkix.Name{Country: []string{"DE"}, Organization: []string{"Elsewhere"}, CommonName: "Elsewhere Devices"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(3 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ = x509.ParseCertificate(interDER)
	keyDER, _ := x509.MarshalECPrivateKey(interKey)
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return encodeCertsPEM(inter, root), keyPEM, root, inter
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	chainPEM, keyPEM, root, inter := externalCA(t)

	t.Run("ok/issue under imported chain verifies", func(t *testing.T) {
		dir := t.TempDir()
		h, err := Import(ctx, dir, chainPEM, keyPEM, []byte("new password"))
		if err != nil {
			t.Fatal(err)
		}
		if !h.Root().Equal(root) || !h.Intermediate().Equal(inter) {
			t.Fatal("imported hierarchy differs from the input")
		}
		loaded, err := LoadHierarchy(ctx, dir, []byte("new password"))
		if err != nil {
			t.Fatalf("load imported hierarchy: %v", err)
		}
		c := newTestCAWith(t, Config{Hierarchy: loaded})
		iss := issue(t, c, "imported-1")
		opensslVerify(t, root, inter, iss.Certificate)
		if _, err := Import(ctx, dir, chainPEM, keyPEM, nil); !isKind(err, pki.Conflict) {
			t.Errorf("second import: err = %v, want pki.Conflict", err)
		}
	})

	t.Run("ok/encrypted PKCS#8 input, stored under the same password", func(t *testing.T) {
		block, _ := pem.Decode(keyPEM)
		priv, _ := x509.ParseECPrivateKey(block.Bytes)
		encrypted, err := encodeKey(priv, []byte("transport secret"))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if _, err := Import(ctx, dir, chainPEM, encrypted, []byte("wrong")); !isKind(err, pki.Unauthenticated) {
			t.Errorf("wrong password: err = %v, want pki.Unauthenticated", err)
		}
		if _, err := Import(ctx, dir, chainPEM, encrypted, []byte("transport secret")); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHierarchy(ctx, dir, nil); !isKind(err, pki.Unauthenticated) {
			t.Errorf("load without password: err = %v, want pki.Unauthenticated", err)
		}
		if _, err := LoadHierarchy(ctx, dir, []byte("transport secret")); err != nil {
			t.Errorf("load with the password: %v", err)
		}
	})

	_, otherKey, otherRoot, _ := externalCA(t)
	leaf := issue(t, newTestCA(t, nil), "a-leaf")
	for name, tc := range map[string]struct{ chain, key []byte }{
		"invalid/key of another CA":    {chainPEM, otherKey},
		"invalid/intermediate only":    {encodeCertsPEM(inter), keyPEM},
		"invalid/wrong root":           {encodeCertsPEM(inter, otherRoot), keyPEM},
		"invalid/leaf as intermediate": {encodeCertsPEM(leaf.Certificate, sharedHierarchy(t, ECDSAP256).Root()), keyPEM},
		"invalid/garbage chain":        {[]byte("not pem"), keyPEM},
		"invalid/garbage key":          {chainPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Import(ctx, dir, tc.chain, tc.key, nil); !isKind(err, pki.Invalid) {
				t.Errorf("err = %v, want pki.Invalid", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "ca")); !os.IsNotExist(err) {
				t.Error("a failed import left files behind")
			}
		})
	}
}
