package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// Files of a hierarchy under DataDir/ca/. chain.pem is the source of truth
// for the certificates; root.key exists only for hierarchies made by Init
// (an operator may move it offline: serving never needs it).
const (
	caDirName        = "ca"
	chainFile        = "chain.pem"
	intermediateKey  = "intermediate.key"
	rootKeyFile      = "root.key"
	keyFileMode      = 0o600
	certFileMode     = 0o644
	dataDirMode      = 0o700
	maxChainPEMBytes = 1 << 20
)

// Hierarchy is a loaded CA hierarchy: the issuing intermediate, its key, and
// the chain up to the root. It is immutable and safe for concurrent use.
type Hierarchy struct {
	chain    []*x509.Certificate // issuing intermediate first, root last
	signer   crypto.Signer
	chainPEM []byte
	rootFP   string
	// kms and rec are set when the keys live in a KMS (kms.json).
	kms *kmsHandle
	rec kmsRecord

	checkMu  sync.Mutex
	checkAt  time.Time
	checkErr error
}

// Close releases the KMS session of a hierarchy whose keys live in one;
// its signers fail afterwards. It is a no-op for file keys.
func (h *Hierarchy) Close() error {
	if h.kms == nil {
		return nil
	}
	return h.kms.Close()
}

// KeyLocation says where the issuing key is, for logs: "file" or the KMS
// key URI.
func (h *Hierarchy) KeyLocation() string {
	if h.kms == nil {
		return "file"
	}
	return h.rec.Issuing
}

// CheckKey signs a test digest with the issuing key, for readiness: a KMS
// whose token is gone fails it. A result is reused for a second, so probes
// cannot flood the token.
func (h *Hierarchy) CheckKey(context.Context) error {
	h.checkMu.Lock()
	defer h.checkMu.Unlock()
	if time.Since(h.checkAt) < time.Second {
		return h.checkErr
	}
	digest := sha256.Sum256([]byte("fleetpki key check"))
	// SHA-256 suits every CA key type (ECDSA, and RSA PKCS#1 v1.5).
	_, err := h.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	h.checkAt, h.checkErr = time.Now(), err
	if err != nil {
		h.checkErr = pki.Wrap(pki.Unavailable, err, "the issuing CA key cannot sign")
	}
	return h.checkErr
}

// newHierarchy checks that chain and signer form a usable issuing CA and
// derives what the accessors return.
func newHierarchy(chain []*x509.Certificate, signer crypto.Signer) (*Hierarchy, error) {
	if err := validateChain(chain, signer); err != nil {
		return nil, err
	}
	fp := sha256.Sum256(chain[len(chain)-1].Raw)
	return &Hierarchy{chain: chain, signer: signer, chainPEM: encodeCertsPEM(chain...), rootFP: hex.EncodeToString(fp[:])}, nil
}

// Root returns the root certificate, the trust anchor devices and brokers pin.
func (h *Hierarchy) Root() *x509.Certificate { return h.chain[len(h.chain)-1] }

// Intermediate returns the issuing CA certificate, which signs device
// certificates, CRLs and OCSP responder certificates.
func (h *Hierarchy) Intermediate() *x509.Certificate { return h.chain[0] }

// Chain returns the chain from the issuing intermediate to the root. The
// slice is a copy; the certificates are shared and must not be modified.
func (h *Hierarchy) Chain() []*x509.Certificate { return slices.Clone(h.chain) }

// ChainPEM returns the chain as PEM, the issuing intermediate first and the root last.
func (h *Hierarchy) ChainPEM() []byte { return slices.Clone(h.chainPEM) }

// RootFingerprint returns the lower-case hex SHA-256 of the root
// certificate's DER, which enrolling clients use to trust the server.
func (h *Hierarchy) RootFingerprint() string { return h.rootFP }

// Signer returns the issuing key. Whoever holds it can issue certificates in
// the CA's name: hand it only to the CRL and OCSP signers.
func (h *Hierarchy) Signer() crypto.Signer { return h.signer }

// IssuerKeyID returns the intermediate's subject key identifier in lower-case
// hex, the IssuerKeyID of every pki.CertRecord it issues.
func (h *Hierarchy) IssuerKeyID() string { return hex.EncodeToString(h.Intermediate().SubjectKeyId) }

// validateChain checks the things that, if wrong, would make every issued
// certificate useless or dangerous: the key belongs to the intermediate, the
// intermediate may sign certificates and CRLs and has a key identifier, and
// the chain verifies up to a self-signed root. Validity in time is not checked
// here, so that an expired CA can still be loaded to publish its last CRL.
func validateChain(chain []*x509.Certificate, signer crypto.Signer) error {
	if len(chain) < 2 {
		return pki.Errorf(pki.Invalid, "the CA chain must hold the issuing CA certificate and its root (got %d certificate(s))", len(chain))
	}
	inter, root := chain[0], chain[len(chain)-1]
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(inter.PublicKey) {
		return pki.Errorf(pki.Invalid, "the CA key does not belong to the issuing CA certificate %q", inter.Subject)
	}
	if err := checkCAKey(inter.PublicKey); err != nil {
		return err
	}
	switch {
	case !inter.BasicConstraintsValid || !inter.IsCA:
		return pki.Errorf(pki.Invalid, "issuing certificate %q is not a CA (basicConstraints cA is not set)", inter.Subject)
	case inter.KeyUsage&x509.KeyUsageCertSign == 0 || inter.KeyUsage&x509.KeyUsageCRLSign == 0:
		return pki.Errorf(pki.Invalid, "issuing CA %q must have key usages keyCertSign and cRLSign", inter.Subject)
	case len(inter.SubjectKeyId) == 0:
		return pki.Errorf(pki.Invalid, "issuing CA %q has no subject key identifier", inter.Subject)
	case len(inter.ExtKeyUsage) > 0 && !slices.Contains(inter.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(inter.ExtKeyUsage, x509.ExtKeyUsageAny):
		// Verifiers (Go, OpenSSL) nest EKUs: a CA limited to serverAuth cannot vouch for client certificates.
		return pki.Errorf(pki.Invalid, "issuing CA %q restricts extended key usage and does not allow clientAuth", inter.Subject)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil || !bytes.Equal(root.RawIssuer, root.RawSubject) {
		return pki.Errorf(pki.Invalid, "the last certificate of the chain (%q) is not a self-signed root CA", root.Subject)
	}
	roots, mids := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1 : len(chain)-1] {
		mids.AddCert(c)
	}
	// Verify at a moment when the intermediate is valid: structure, not time, is checked here.
	at := inter.NotBefore.Add(time.Second)
	if _, err := inter.Verify(x509.VerifyOptions{Roots: roots, Intermediates: mids, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return pki.Wrap(pki.Invalid, err, fmt.Sprintf("the issuing CA %q does not verify up to the root %q", inter.Subject, root.Subject))
	}
	return nil
}

// parseChainPEM reads the CERTIFICATE blocks of a PEM bundle in order.
func parseChainPEM(b []byte) ([]*x509.Certificate, error) {
	if len(b) > maxChainPEMBytes {
		return nil, pki.Errorf(pki.Invalid, "the CA chain is larger than %d bytes", maxChainPEMBytes)
	}
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, pki.Errorf(pki.Invalid, "the CA chain holds a PEM block of type %q; only CERTIFICATE is accepted", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, pki.Wrap(pki.Invalid, err, fmt.Sprintf("certificate %d of the CA chain cannot be parsed", len(chain)+1))
		}
		chain = append(chain, c)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		return nil, pki.Errorf(pki.Invalid, "the CA chain has data that is not PEM")
	}
	return chain, nil
}

// Secrets unlock CA keys: the password of key files, the PIN of a KMS
// whose URI names no pin-source.
type Secrets struct {
	Password []byte
	PIN      string
}

// LoadHierarchy is LoadHierarchyWith for file keys (or a KMS that reads
// its PIN from a pin-source).
func LoadHierarchy(ctx context.Context, dataDir string, password []byte) (*Hierarchy, error) {
	return LoadHierarchyWith(ctx, dataDir, Secrets{Password: password})
}

// LoadHierarchyWith loads the hierarchy stored under dataDir/ca: the chain,
// and the issuing key from its file or, when kms.json says so, from the
// KMS. It returns a pki.NotFound error when there is none, and a
// pki.Unauthenticated error when the key file's password or the token's
// PIN is missing or wrong.
func LoadHierarchyWith(ctx context.Context, dataDir string, sec Secrets) (*Hierarchy, error) {
	dir := caDir(dataDir)
	b, err := os.ReadFile(filepath.Join(dir, chainFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, pki.Wrap(pki.NotFound, err, "no CA hierarchy in "+dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA hierarchy: %w", err)
	}
	chain, err := parseChainPEM(b)
	if err != nil {
		return nil, fmt.Errorf("load CA hierarchy from %s: %w", dir, err)
	}
	rec, err := readKMSRecord(dir)
	switch {
	case err == nil:
		handle, signer, err := loadKMSSigners(ctx, rec, sec.PIN)
		if err != nil {
			return nil, fmt.Errorf("load CA hierarchy: the issuing key in %s: %w", rec.KMS, err)
		}
		h, err := newHierarchy(chain, signer)
		if err != nil {
			_ = handle.Close()
			return nil, fmt.Errorf("load CA hierarchy from %s: %w", dir, err)
		}
		h.kms, h.rec = handle, rec
		return h, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("load CA hierarchy: %w", err)
	}
	signer, err := readKeyFile(ctx, filepath.Join(dir, intermediateKey), sec.Password)
	if err != nil {
		return nil, fmt.Errorf("load CA hierarchy: %w", err)
	}
	h, err := newHierarchy(chain, signer)
	if err != nil {
		return nil, fmt.Errorf("load CA hierarchy from %s: %w", dir, err)
	}
	return h, nil
}

// Import stores an externally made issuing CA under dataDir/ca: chainPEM is
// the intermediate followed by any further CAs and the root; keyPEM is the
// intermediate's private key (PEM, PKCS#8/PKCS#1/SEC 1), encrypted or not.
// password decrypts keyPEM if needed and encrypts the stored copy (nil: stored
// unencrypted). The chain must verify, the key must match, and the
// intermediate must be currently valid. An existing hierarchy is a pki.Conflict.
func Import(ctx context.Context, dataDir string, chainPEM, keyPEM []byte, password []byte) (*Hierarchy, error) {
	chain, err := parseChainPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	signer, err := signerFromPEM(ctx, keyPEM, password, "the imported CA key")
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	h, err := newHierarchy(chain, signer)
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	if now := time.Now(); now.Before(h.Intermediate().NotBefore) || now.After(h.Intermediate().NotAfter) {
		return nil, pki.Errorf(pki.Invalid, "import CA: the issuing CA is valid from %s to %s, not now",
			h.Intermediate().NotBefore.UTC().Format(time.RFC3339), h.Intermediate().NotAfter.UTC().Format(time.RFC3339))
	}
	priv, err := privateKeyOf(signer)
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	keyOut, err := encodeKey(priv, password)
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	files := []stagedFile{
		{name: intermediateKey, data: keyOut, mode: keyFileMode},
		{name: chainFile, data: h.chainPEM, mode: certFileMode},
	}
	if err := writeCADir(dataDir, files); err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	return h, nil
}

// ImportKMS stores an externally made issuing CA whose key is already in a
// KMS (made there, or moved there from a file) under dataDir/ca: chainPEM
// as for Import, keyURI the key in k (pkcs11:id=…;object=…). The key must
// belong to the issuing CA certificate and sign.
func ImportKMS(ctx context.Context, dataDir string, chainPEM []byte, k KMS, keyURI string) (*Hierarchy, error) {
	chain, err := parseChainPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	handle, err := openKMSHandle(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("import CA: %w", err)
	}
	signer, err := newKeySigner(handle, keyURI)
	if err == nil {
		var h *Hierarchy
		if h, err = newHierarchy(chain, signer); err == nil {
			h.kms, h.rec = handle, kmsRecord{KMS: k.URI, Issuing: keyURI}
			if err = h.CheckKey(ctx); err == nil {
				b, _ := json.MarshalIndent(h.rec, "", "  ") // strings only
				err = writeCADir(dataDir, []stagedFile{{name: chainFile, data: h.chainPEM, mode: certFileMode},
					{name: kmsFile, data: append(b, '\n'), mode: certFileMode}})
			}
			if err == nil {
				return h, nil
			}
		}
	}
	_ = handle.Close()
	return nil, fmt.Errorf("import CA: %w", err)
}

// stagedFile is one file of a new hierarchy directory.
type stagedFile struct {
	name string
	data []byte
	mode os.FileMode
}

// writeCADir creates dataDir/ca with files, all or nothing: the files are
// written and synced in a staging directory that is then renamed into place.
// The rename fails when dataDir/ca already holds anything, which also makes
// two concurrent Inits end with one hierarchy and one pki.Conflict.
func writeCADir(dataDir string, files []stagedFile) error {
	dir := caDir(dataDir)
	if err := checkNoHierarchy(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, dataDirMode); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	staging, err := os.MkdirTemp(dataDir, ".ca-staging-")
	if err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(staging)
		}
	}()
	for _, f := range files {
		if err := writeFileSync(filepath.Join(staging, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	// An empty ca/ directory (e.g. made by an operator) is not a hierarchy: replace it.
	_ = os.Remove(dir)
	if err := os.Rename(staging, dir); err != nil {
		if checkNoHierarchy(dir) != nil || errors.Is(err, fs.ErrExist) {
			return pki.Errorf(pki.Conflict, "a CA hierarchy already exists in %s", dir)
		}
		return pki.Wrap(pki.Conflict, err, fmt.Sprintf("cannot create %s (does it exist and hold other files?)", dir))
	}
	done = true
	if d, err := os.Open(dataDir); err == nil { // make the rename durable
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// checkNoHierarchy returns pki.Conflict when dir holds a hierarchy.
func checkNoHierarchy(dir string) error {
	for _, name := range []string{chainFile, intermediateKey, kmsFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return pki.Errorf(pki.Conflict, "a CA hierarchy already exists in %s", dir)
		}
	}
	return nil
}

// writeFileSync creates a new file with exactly mode (umask aside, then
// chmod) and syncs it, so a crash cannot leave an empty key behind a rename.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RootSigner loads the root's key when this data directory holds it (a
// hierarchy made by Init: a file, or a key in the KMS), so the root can sign
// its own CRL and OCSP answers. It returns a pki.NotFound error for an
// offline or imported root, whose key lives elsewhere.
func (h *Hierarchy) RootSigner(ctx context.Context, dataDir string, password []byte) (crypto.Signer, error) {
	var s crypto.Signer
	var err error
	switch {
	case h.kms != nil && h.rec.Root != "":
		s, err = newKeySigner(h.kms, h.rec.Root)
	case h.kms != nil:
		return nil, pki.Errorf(pki.NotFound, "the root key is not in the KMS (an offline root)")
	default:
		s, err = readKeyFile(ctx, filepath.Join(caDir(dataDir), rootKeyFile), password)
	}
	if err != nil {
		return nil, err
	}
	pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(h.Root().PublicKey) {
		return nil, pki.Errorf(pki.Invalid, "the root key in %s does not belong to the root certificate %q", caDir(dataDir), h.Root().Subject)
	}
	return s, nil
}

// LoadIssuer returns the issuing CA certificate for processes that verify
// what it signs (CRL export, the standalone broker, the keyless OCSP
// responder): from chainFile (a PEM bundle: the first issuing CA in it,
// pathlen 0 with cRLSign) or, when chainFile is empty, from dataDir's chain.
func LoadIssuer(dataDir, chainFile string) (*x509.Certificate, error) {
	if chainFile == "" {
		chain, err := LoadChain(dataDir)
		if err != nil {
			return nil, fmt.Errorf("no CA chain in --data-dir %q; give --ca-file: %w", dataDir, err)
		}
		return chain[0], nil
	}
	b, err := os.ReadFile(chainFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil && c.IsCA && c.KeyUsage&x509.KeyUsageCRLSign != 0 && c.MaxPathLenZero {
			return c, nil // the issuing CA: it signs device certificates and their CRL
		}
	}
	return nil, fmt.Errorf("--ca-file %q holds no issuing CA certificate (pathlen 0, cRLSign)", chainFile)
}

// OfflineRoot is what `fleetpki root sign` works with on the offline
// machine: the root, its key, and the issuing CAs it vouches for.
type OfflineRoot struct {
	Root    *x509.Certificate
	Signer  crypto.Signer
	Issuing []*x509.Certificate
}

// LoadOfflineRoot reads an offline root directory (InitOptions.OfflineRoot):
// root.key (owner-only, decrypted with password) and chain.pem, whose
// self-signed certificate must be the key's and whose other CA
// certificates must be signed by it.
func LoadOfflineRoot(ctx context.Context, dir string, password []byte) (*OfflineRoot, error) {
	b, err := os.ReadFile(filepath.Join(dir, OfflineChain))
	if err != nil {
		return nil, fmt.Errorf("offline root: %w", err)
	}
	chain, err := parseChainPEM(b)
	if err != nil {
		return nil, fmt.Errorf("offline root: %s: %w", OfflineChain, err)
	}
	signer, err := readKeyFile(ctx, filepath.Join(dir, OfflineRootKey), password)
	if err != nil {
		return nil, fmt.Errorf("offline root: %w", err)
	}
	o := &OfflineRoot{Signer: signer}
	for _, c := range chain {
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			o.Root = c
		}
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if o.Root == nil || !ok || !pub.Equal(o.Root.PublicKey) {
		return nil, pki.Errorf(pki.Invalid, "offline root: %s holds no root certificate for the key in %s", OfflineChain, OfflineRootKey)
	}
	for _, c := range chain {
		if c != o.Root && c.IsCA && c.CheckSignatureFrom(o.Root) == nil {
			o.Issuing = append(o.Issuing, c)
		}
	}
	if len(o.Issuing) == 0 {
		return nil, pki.Errorf(pki.Invalid, "offline root: %s holds no issuing CA signed by the root", OfflineChain)
	}
	return o, nil
}

// LoadTrust reads a chain file (--ca-file) for a process that verifies
// device certificates: a pool of every certificate in it and the issuing CA.
func LoadTrust(chainFile string) (*x509.CertPool, *x509.Certificate, error) {
	issuer, err := LoadIssuer("", chainFile)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(chainFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool, issuer, nil
}
