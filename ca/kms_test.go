package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/internal/testenv"
	"github.com/fleetpki/fleetpki/pki"
)

// Keys in a SoftHSM2 token: created inside it, non-extractable and
// sensitive; the data directory holds only the certificates and where
// the keys are; certificates issued through the token verify; the root
// key signs from the token too; the hierarchy loads again with the PIN.
func TestKeysInSoftHSM(t *testing.T) {
	hsm := testenv.SoftHSM(t)
	env := testenv.New(t, testenv.Options{KMS: &ca.KMS{URI: hsm.URI}})
	h := env.Hierarchy
	if !strings.HasPrefix(h.KeyLocation(), "pkcs11:id=") {
		t.Fatalf("issuing key at %q, want a pkcs11 URI", h.KeyLocation())
	}
	keys := hsm.PrivateKeys(t)
	if len(keys) != 2 {
		t.Fatalf("the token holds %d private keys, want root and issuing: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(k, "never extractable") || !strings.Contains(k, "always sensitive") {
			t.Errorf("key %s is not sensitive and non-extractable", k)
		}
	}
	if found := testenv.FindPrivateKeys(t, env.Dir); len(found) != 0 {
		t.Fatalf("private keys in the data directory: %v", found)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "ca", "kms.json")); err != nil {
		t.Fatal(err)
	}
	iss, _ := env.Issue(t, "dev-1")
	if err := iss.Certificate.CheckSignatureFrom(h.Intermediate()); err != nil {
		t.Fatalf("a certificate signed through the token does not verify: %v", err)
	}
	root, err := h.RootSigner(t.Context(), env.Dir, nil)
	if err != nil {
		t.Fatalf("root key in the token: %v", err)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, h.Root(), root)
	if err != nil {
		t.Fatal(err)
	}
	if crl, err := x509.ParseRevocationList(der); err != nil || crl.CheckSignatureFrom(h.Root()) != nil {
		t.Fatalf("root CRL signed in the token: %v", err)
	}
	again, err := ca.LoadHierarchyWith(t.Context(), env.Dir, ca.Secrets{})
	if err != nil {
		t.Fatalf("reload with the pin-source of kms.json: %v", err)
	}
	again.Close()

	// The positive control of the scan: file keys are found.
	plain := testenv.New(t, testenv.Options{})
	if found := testenv.FindPrivateKeys(t, plain.Dir); len(found) != 2 {
		t.Fatalf("the scan finds %v in a file-key data directory, want root.key and intermediate.key", found)
	}
}

// A wrong PIN, a missing token, a PIN in the URI and a non-PKCS#11 KMS are
// clear errors before anything is created.
func TestKMSErrors(t *testing.T) {
	hsm := testenv.SoftHSM(t)
	dir := t.TempDir()
	badPIN := filepath.Join(dir, "bad-pin")
	_ = os.WriteFile(badPIN, []byte("0000"), 0o600)
	for _, tc := range []struct {
		uri  string
		kind *pki.Kind
		want string
	}{
		{strings.Split(hsm.URI, "?")[0] + "?pin-source=" + badPIN, pki.Unauthenticated, "PIN"},
		{strings.Replace(hsm.URI, "token="+hsm.Label, "token=nosuch", 1), pki.NotFound, "token"},
		{"pkcs11:module-path=" + testenv.SoftHSMModule + ";token=" + hsm.Label + "?pin-value=1234", pki.Invalid, "pin-value"},
		{"awskms:region=eu-west-1", pki.Invalid, "not supported"},
		{"pkcs11:module-path=" + testenv.SoftHSMModule + "?pin-source=" + badPIN, pki.Invalid, "names no token"},
	} {
		data := t.TempDir()
		_, err := ca.Init(t.Context(), ca.InitOptions{DataDir: data, KMS: &ca.KMS{URI: tc.uri}})
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Init with %s: %v, want %v mentioning %q", tc.uri, err, tc.kind, tc.want)
		}
		if entries, _ := os.ReadDir(data); len(entries) != 0 {
			t.Errorf("Init with %s left %d entries in the data directory", tc.uri, len(entries))
		}
	}
	// The PIN from the environment (no pin-source in the URI). (A wrong
	// PIN at load is tested in a fresh process, cmd/fleetpki: PKCS#11
	// logins are per process and token.)
	noSource := strings.Split(hsm.URI, "?")[0]
	env := testenv.New(t, testenv.Options{KMS: &ca.KMS{URI: noSource, PIN: hsm.PIN}})
	again, err := ca.LoadHierarchyWith(t.Context(), env.Dir, ca.Secrets{PIN: hsm.PIN})
	if err != nil {
		t.Fatalf("load with the PIN: %v", err)
	}
	again.Close()
}

// A token pulled while the CA serves: the key check fails and issuance is
// pki.Unavailable (503), nothing stored; put back, both work again.
func TestTokenPulledAndPutBack(t *testing.T) {
	hsm := testenv.SoftHSM(t)
	env := testenv.New(t, testenv.Options{KMS: &ca.KMS{URI: hsm.URI}})
	if err := env.Hierarchy.CheckKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	hsm.Pull(t)
	time.Sleep(1100 * time.Millisecond) // past the check's reuse and the reopen pause
	if err := env.Hierarchy.CheckKey(t.Context()); !errors.Is(err, pki.Unavailable) {
		t.Fatalf("key check with the token pulled: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if _, err := env.CA.Issue(t.Context(), ca.IssueRequest{DeviceID: "dev-2", CSR: csr}); !errors.Is(err, pki.Unavailable) {
		t.Fatalf("issue with the token pulled: %v, want Unavailable", err)
	}
	if _, err := env.Store.GetDevice(t.Context(), "dev-2"); !errors.Is(err, pki.NotFound) {
		t.Fatalf("a failed issuance stored the device: %v", err)
	}
	hsm.Plug(t)
	time.Sleep(1100 * time.Millisecond)
	if err := env.Hierarchy.CheckKey(t.Context()); err != nil {
		t.Fatalf("key check after the token came back: %v", err)
	}
	if _, err := env.CA.Issue(t.Context(), ca.IssueRequest{DeviceID: "dev-2", CSR: csr}); err != nil {
		t.Fatalf("issue after the token came back: %v", err)
	}
}

// An offline root: the data directory gets no root key; the offline
// directory gets it and the chain; with a KMS the issuing key goes to the
// token and the root key still to the offline directory.
func TestOfflineRoot(t *testing.T) {
	offline := filepath.Join(t.TempDir(), "usb")
	env := testenv.New(t, testenv.Options{OfflineRoot: offline})
	if _, err := env.Hierarchy.RootSigner(t.Context(), env.Dir, nil); !errors.Is(err, pki.NotFound) {
		t.Fatalf("serve finds a root key: %v", err)
	}
	if found := testenv.FindPrivateKeys(t, env.Dir); len(found) != 1 || filepath.Base(found[0]) != "intermediate.key" {
		t.Fatalf("private keys in the data directory: %v, want the issuing key only", found)
	}
	if found := testenv.FindPrivateKeys(t, offline); len(found) != 1 || filepath.Base(found[0]) != ca.OfflineRootKey {
		t.Fatalf("offline directory: %v", found)
	}
	if _, err := ca.Init(t.Context(), ca.InitOptions{DataDir: t.TempDir(), OfflineRoot: offline}); !errors.Is(err, pki.Conflict) {
		t.Fatalf("a second root into the same offline directory: %v", err)
	}

	hsm := testenv.SoftHSM(t)
	offline2 := filepath.Join(t.TempDir(), "usb")
	env2 := testenv.New(t, testenv.Options{KMS: &ca.KMS{URI: hsm.URI}, OfflineRoot: offline2})
	if keys := hsm.PrivateKeys(t); len(keys) != 1 || !strings.Contains(keys[0], "issuing") {
		t.Fatalf("token keys %v, want the issuing key only", keys)
	}
	if found := testenv.FindPrivateKeys(t, env2.Dir); len(found) != 0 {
		t.Fatalf("private keys in the data directory: %v", found)
	}
	if _, err := env2.Hierarchy.RootSigner(t.Context(), env2.Dir, nil); !errors.Is(err, pki.NotFound) {
		t.Fatalf("serve finds a root key: %v", err)
	}
}

// Moving a file key into the token (softhsm2-util --import) and importing
// the hierarchy with the key's URI.
func TestImportKeyIntoToken(t *testing.T) {
	plain := testenv.New(t, testenv.Options{})
	hsm := testenv.SoftHSM(t)
	out, err := exec.Command("softhsm2-util", "--import", filepath.Join(plain.Dir, "ca", "intermediate.key"), "--token", hsm.Label,
		"--label", "fleetpki-issuing", "--id", "a1b2", "--pin", hsm.PIN).CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --import: %v\n%s", err, out)
	}
	data := t.TempDir()
	h, err := ca.ImportKMS(t.Context(), data, plain.Hierarchy.ChainPEM(), ca.KMS{URI: hsm.URI}, "pkcs11:id=a1b2;object=fleetpki-issuing")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if found := testenv.FindPrivateKeys(t, data); len(found) != 0 {
		t.Fatalf("private keys in the data directory: %v", found)
	}
	// The root's key is not the issuing CA's: refused.
	if _, err := ca.ImportKMS(t.Context(), t.TempDir(), []byte(strings.Join(strings.SplitAfter(string(plain.Hierarchy.ChainPEM()), "-----END CERTIFICATE-----\n")[1:], "")+string(plain.Hierarchy.ChainPEM())),
		ca.KMS{URI: hsm.URI}, "pkcs11:id=a1b2;object=fleetpki-issuing"); err == nil {
		t.Fatal("a chain whose first certificate is not the key's was imported")
	}
}

// BenchmarkIssueKeys: ca.Issue with the issuing key in a file and in
// SoftHSM2, in parallel on every core: the cost of the PKCS#11 path
// without HTTP and the database's commit (the store is SQLite).
func BenchmarkIssueKeys(b *testing.B) {
	for _, keys := range []string{"file", "softhsm"} {
		b.Run("keys="+keys, func(b *testing.B) {
			opts := testenv.Options{}
			if keys == "softhsm" {
				opts.KMS = &ca.KMS{URI: testenv.SoftHSM(b).URI}
			}
			env := testenv.New(b, opts)
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			b.ResetTimer()
			var n atomicCounter
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := env.CA.Issue(b.Context(), ca.IssueRequest{DeviceID: "d-" + n.next(), CSR: csr}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() string { return strconv.FormatInt(c.n.Add(1), 10) }
