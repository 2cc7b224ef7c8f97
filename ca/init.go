package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"

	"github.com/fleetpki/fleetpki/pki"
)

// Lifetimes of the hierarchy Init creates. The intermediate lives half as
// long as the root so that it can be replaced under the same root, which
// devices keep pinned, well before the root expires.
const (
	rootLifetime         = 10 * 365 * 24 * time.Hour
	intermediateLifetime = 5 * 365 * 24 * time.Hour
	// backdate absorbs clock skew between the CA and verifiers (devices with
	// a drifting RTC): a certificate is valid from a minute before it was made.
	backdate    = pki.Backdate
	defaultName = "fleetpki"
	maxNameLen  = 48 // leaves room for " Issuing CA" within the 64-character CN limit
)

// InitOptions configures Init.
type InitOptions struct {
	// DataDir is the data directory; the hierarchy goes to DataDir/ca.
	DataDir string
	// Algorithm of both CA keys; empty means ECDSAP256.
	Algorithm KeyAlgorithm
	// Name is the organisation and the prefix of the CA common names
	// ("<Name> Root CA", "<Name> Issuing CA"); empty means "fleetpki".
	Name string
	// Password encrypts the key files; nil (or empty) stores them unencrypted.
	Password []byte
	// KMS, when its URI is set, creates the issuing key (and the root key,
	// unless OfflineRoot is set) inside it, non-extractable;
	// DataDir/ca/kms.json records where they are. Loading takes its PIN
	// from KMS.PIN (which may come without a URI).
	KMS *KMS
	// OfflineRoot, when set, is a directory (e.g. removable media) that
	// gets the root key and the chain, for `fleetpki root sign` on the
	// offline machine; DataDir then holds no root key.
	OfflineRoot string
	// Clock sets the validity start; nil means the system clock.
	Clock pki.Clock
}

// Offline root files (InitOptions.OfflineRoot).
const (
	// OfflineRootKey is the root's key in the offline root directory.
	OfflineRootKey = rootKeyFile
	// OfflineChain is the chain (issuing CA first, root last) in the
	// offline root directory: the issuing CAs the root vouches for.
	OfflineChain = chainFile
)

// Init creates a new hierarchy under opts.DataDir/ca: a self-signed root
// (10 years) and an issuing intermediate (5 years, pathLen 0, keyCertSign and
// cRLSign) signed by it. Keys are files (mode 0600), or inside opts.KMS; the
// root's may go to opts.OfflineRoot instead. It returns a pki.Conflict
// error if the directory already holds a hierarchy, and leaves no file
// behind when it fails.
func Init(ctx context.Context, opts InitOptions) (*Hierarchy, error) {
	if opts.DataDir == "" {
		return nil, pki.Errorf(pki.Invalid, "init CA: the data directory is not set")
	}
	if opts.Algorithm == "" {
		opts.Algorithm = ECDSAP256
	}
	if opts.Name == "" {
		opts.Name = defaultName
	}
	if opts.Clock == nil {
		opts.Clock = pki.SystemClock{}
	}
	if err := validateCAName(opts.Name); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	keyReq, err := opts.Algorithm.createKeyRequest()
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	// Fail before the slow key generation (RSA) when the directory is taken.
	if err := checkNoHierarchy(caDir(opts.DataDir)); err != nil {
		return nil, err
	}
	if opts.OfflineRoot != "" {
		if _, err := os.Stat(filepath.Join(opts.OfflineRoot, OfflineRootKey)); err == nil {
			return nil, pki.Errorf(pki.Conflict, "init CA: %s already holds a root key", opts.OfflineRoot)
		}
	}
	now := opts.Clock.Now().UTC()
	soft, err := newKeyManager(ctx)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	defer soft.Close()
	rootKM, interKM := soft, soft
	rootReq, interReq := *keyReq, *keyReq
	var rec *kmsRecord
	if opts.KMS != nil && opts.KMS.URI != "" {
		hsm, err := opts.KMS.open(ctx)
		if err != nil {
			return nil, fmt.Errorf("init CA: %w", err)
		}
		defer hsm.Close()
		rec = &kmsRecord{KMS: opts.KMS.URI, Issuing: newKeyURI("issuing", now)}
		interKM, interReq.Name = hsm, rec.Issuing
		if opts.OfflineRoot == "" {
			rec.Root = newKeyURI("root", now)
			rootKM, rootReq.Name = hsm, rec.Root
		}
	}
	rootCAS, err := softcas.New(ctx, apiv1.Options{IsCreator: true, KeyManager: rootKM})
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	interCAS, err := softcas.New(ctx, apiv1.Options{IsCreator: true, KeyManager: interKM})
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}

	notBefore := now.Add(-backdate)
	root, err := rootCAS.CreateCertificateAuthority(&apiv1.CreateCertificateAuthorityRequest{
		Name: opts.Name + " Root CA",
		Type: apiv1.RootCA,
		Template: &x509.Certificate{
			SerialNumber:          newSerial(),
			Subject:               pkix.Name{Organization: []string{opts.Name}, CommonName: opts.Name + " Root CA"},
			NotBefore:             notBefore,
			NotAfter:              now.Add(rootLifetime),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            -1, // the root does not limit the path; the intermediate does
		},
		Lifetime:  rootLifetime,
		CreateKey: &rootReq,
	})
	if err != nil {
		return nil, fmt.Errorf("init CA: create root: %w", err)
	}
	inter, err := interCAS.CreateCertificateAuthority(&apiv1.CreateCertificateAuthorityRequest{
		Name: opts.Name + " Issuing CA",
		Type: apiv1.IntermediateCA,
		Template: &x509.Certificate{
			SerialNumber:          newSerial(),
			Subject:               pkix.Name{Organization: []string{opts.Name}, CommonName: opts.Name + " Issuing CA"},
			NotBefore:             notBefore,
			NotAfter:              now.Add(intermediateLifetime),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            0,
			MaxPathLenZero:        true, // only end-entity certificates below the issuing CA
		},
		Lifetime:  intermediateLifetime,
		Parent:    root,
		CreateKey: &interReq,
	})
	if err != nil {
		return nil, fmt.Errorf("init CA: create intermediate: %w", err)
	}

	h, err := newHierarchy([]*x509.Certificate{inter.Certificate, root.Certificate}, inter.Signer)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	files := []stagedFile{{name: chainFile, data: h.chainPEM, mode: certFileMode}}
	if rec != nil {
		b, _ := json.MarshalIndent(rec, "", "  ") // strings only
		files = append(files, stagedFile{name: kmsFile, data: append(b, '\n'), mode: certFileMode})
	} else {
		interKey, err := encodeKey(inter.PrivateKey, opts.Password)
		if err != nil {
			return nil, fmt.Errorf("init CA: %w", err)
		}
		files = append(files, stagedFile{name: intermediateKey, data: interKey, mode: keyFileMode})
	}
	var offline []string
	if rec == nil || rec.Root == "" {
		rootKey, err := encodeKey(root.PrivateKey, opts.Password)
		if err != nil {
			return nil, fmt.Errorf("init CA: %w", err)
		}
		if opts.OfflineRoot == "" {
			files = append(files, stagedFile{name: rootKeyFile, data: rootKey, mode: keyFileMode})
		} else if offline, err = writeOfflineRoot(opts.OfflineRoot, rootKey, h.chainPEM); err != nil {
			return nil, fmt.Errorf("init CA: %w", err)
		}
	}
	if err := writeCADir(opts.DataDir, files); err != nil {
		for _, f := range offline {
			_ = os.Remove(f)
		}
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if rec != nil {
		// Serve from the token through the reopening signer, as a start would.
		return LoadHierarchyWith(ctx, opts.DataDir, Secrets{Password: opts.Password, PIN: opts.KMS.PIN})
	}
	return h, nil
}

// writeOfflineRoot writes the root key and the chain into dir (made if
// missing; it may be a mounted medium that holds other files) and returns
// the files written.
func writeOfflineRoot(dir string, rootKey, chainPEM []byte) ([]string, error) {
	if err := os.MkdirAll(dir, dataDirMode); err != nil {
		return nil, fmt.Errorf("offline root directory: %w", err)
	}
	var written []string
	for _, f := range []stagedFile{{OfflineRootKey, rootKey, keyFileMode}, {OfflineChain, chainPEM, certFileMode}} {
		p := filepath.Join(dir, f.name)
		if err := writeFileSync(p, f.data, f.mode); err != nil {
			for _, w := range written {
				_ = os.Remove(w)
			}
			return nil, err
		}
		written = append(written, p)
	}
	return written, nil
}

// validateCAName keeps the CA name printable and short enough for a CN.
func validateCAName(name string) error {
	if len(name) > maxNameLen {
		return pki.Errorf(pki.Invalid, "CA name is longer than %d bytes", maxNameLen)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return pki.Errorf(pki.Invalid, "CA name contains a control character")
		}
	}
	return nil
}

func caDir(dataDir string) string { return filepath.Join(dataDir, caDirName) }

// encodeCertsPEM encodes certificates as consecutive PEM blocks.
func encodeCertsPEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // a bytes.Buffer write cannot fail
	}
	return buf.Bytes()
}

// LoadOrInit loads the hierarchy of opts.DataDir, or creates one (first
// start) when there is none, and reports whether it created it. Another
// process sharing the data directory that creates it first is no error:
// its hierarchy is loaded.
func LoadOrInit(ctx context.Context, opts InitOptions) (*Hierarchy, bool, error) {
	secrets := Secrets{Password: opts.Password}
	if opts.KMS != nil {
		secrets.PIN = opts.KMS.PIN
	}
	h, err := LoadHierarchyWith(ctx, opts.DataDir, secrets)
	if err == nil {
		return h, false, nil
	}
	if !errors.Is(err, pki.NotFound) {
		return nil, false, err
	}
	h, err = Init(ctx, opts)
	if errors.Is(err, pki.Conflict) {
		h, err = LoadHierarchyWith(ctx, opts.DataDir, secrets)
		return h, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return h, true, nil
}

// InitEvent is the audit event of a hierarchy's birth (how: "created" or
// "imported"). Init and Import only write files, so the caller that knows
// the store appends it.
func InitEvent(h *Hierarchy, how, algorithm string, actor pki.Actor, at time.Time) pki.AuditEvent {
	details := map[string]string{"how": how, "root_subject": h.Root().Subject.String(),
		"intermediate_subject": h.Intermediate().Subject.String(), "issuer_key_id": h.IssuerKeyID()}
	if algorithm != "" {
		details["key_algorithm"] = algorithm
	}
	return pki.AuditEvent{Time: at.UTC(), Actor: actor, Action: pki.ActionCAInit, Target: "root-sha256:" + h.RootFingerprint(), Details: details}
}
