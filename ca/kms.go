package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.step.sm/crypto/kms"
	kmsapi "go.step.sm/crypto/kms/apiv1"

	// The PKCS#11 key manager registers itself; without cgo it is a stub
	// that says so at run time (see PKCS11Compiled).
	_ "go.step.sm/crypto/kms/pkcs11"
	"go.step.sm/crypto/kms/uri"

	"github.com/fleetpki/fleetpki/pki"
)

// KMS names a key manager that holds CA keys: a go.step.sm/crypto/kms URI
// such as pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=fleetpki?pin-source=/etc/fleetpki/pin,
// and the PIN when the URI names no pin-source (from the environment: a
// PIN is never a flag, nor written to the data directory).
type KMS struct {
	URI string
	PIN string
}

// kmsFile records, under DataDir/ca, where the CA keys of a hierarchy
// whose keys live in a KMS are: the KMS URI (no PIN) and the keys' URIs.
const kmsFile = "kms.json"

type kmsRecord struct {
	KMS     string `json:"kms"`
	Issuing string `json:"issuing_key"`
	Root    string `json:"root_key,omitempty"`
}

// PKCS11Compiled reports whether this binary can talk to PKCS#11 modules
// (it needs cgo): `go build` with a C compiler, as `make build-hsm` does.
func PKCS11Compiled() bool { return pkcs11Compiled }

// check refuses KMS URIs fleetpki cannot use, or that would put the PIN
// in a flag or in the data directory.
func (k KMS) check() error {
	u, err := uri.Parse(k.URI)
	if err != nil {
		return pki.Wrap(pki.Invalid, err, "the KMS URI does not parse")
	}
	if u.Has("pin-value") {
		return pki.Errorf(pki.Invalid, "the KMS URI holds the PIN (pin-value): give pin-source=FILE in the URI, or the PIN in %s", EnvKMSPIN)
	}
	switch kmsapi.Type(strings.ToLower(u.Scheme)) {
	case kmsapi.PKCS11:
		if !pkcs11Compiled {
			return pki.Errorf(pki.Invalid, "this fleetpki binary was built without cgo and cannot load PKCS#11 modules; build it with a C compiler (make build-hsm)")
		}
		if u.Get("token") == "" && u.Get("serial") == "" && u.Get("slot-id") == "" {
			return pki.Errorf(pki.Invalid, "the KMS URI names no token: add token=LABEL (or serial= or slot-id=)")
		}
	default:
		return pki.Errorf(pki.Invalid, "KMS %q is not supported: fleetpki keeps CA keys in files or in a PKCS#11 token (pkcs11:…)", u.Scheme)
	}
	return nil
}

// EnvKMSPIN carries the PIN of a KMS whose URI names no pin-source.
const EnvKMSPIN = "FLEETPKI_KMS_PIN"

// open opens the key manager, with errors an operator can act on.
func (k KMS) open(ctx context.Context) (kms.KeyManager, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	km, err := kms.New(ctx, kmsapi.Options{URI: k.URI, Pin: k.PIN})
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "CKR_PIN_INCORRECT"), strings.Contains(msg, "CKR_PIN_LEN_RANGE"), strings.Contains(msg, "CKR_PIN_LOCKED"):
			return nil, pki.Wrap(pki.Unauthenticated, err, "the token refused the PIN (pin-source in the KMS URI, or "+EnvKMSPIN+")")
		case strings.Contains(msg, "could not find PKCS#11 token"), strings.Contains(msg, "no slot"):
			return nil, pki.Wrap(pki.NotFound, err, "no PKCS#11 token matches the KMS URI (is the token present?)")
		}
		return nil, pki.Wrap(pki.Unavailable, err, "the KMS cannot be opened")
	}
	return km, nil
}

// newKeyURI names a new key in the KMS: PKCS#11 wants an id and a label.
func newKeyURI(role string, now time.Time) string {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return fmt.Sprintf("pkcs11:id=%s;object=fleetpki-%s-%s", hex.EncodeToString(id), role, now.UTC().Format("20060102T150405"))
}

// kmsHandle is one open key manager shared by a hierarchy's keys. A token
// that is pulled and put back leaves the open session's handles stale, so
// a failed signature reopens it (at most once a second) and tries again.
type kmsHandle struct {
	cfg    KMS
	mu     sync.Mutex
	km     kms.KeyManager
	gen    int       // counts sessions opened
	at     time.Time // of the last opening attempt
	closed bool
}

func openKMSHandle(ctx context.Context, cfg KMS) (*kmsHandle, error) {
	km, err := cfg.open(ctx)
	if err != nil {
		return nil, err
	}
	return &kmsHandle{cfg: cfg, km: km, at: time.Now()}, nil
}

// signer returns a signer of the key in the current session, opening one
// if the last reopening failed (at most once a second).
func (h *kmsHandle) signer(key string) (crypto.Signer, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.km == nil && !h.openLocked(context.Background()) {
		return nil, h.gen, pki.Errorf(pki.Unavailable, "the KMS is closed or cannot be opened (is the token present?)")
	}
	s, err := h.km.CreateSigner(&kmsapi.CreateSignerRequest{SigningKey: key})
	if err != nil {
		return nil, h.gen, pki.Wrap(pki.Unavailable, err, "the CA key "+key+" cannot be used")
	}
	return s, h.gen, nil
}

// reopen replaces a session that failed at generation seen; false when it
// cannot (too soon after the last try, or the KMS still fails).
func (h *kmsHandle) reopen(ctx context.Context, seen int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gen != seen && h.km != nil {
		return true // another signature reopened it meanwhile
	}
	if h.km != nil {
		// Close first: a PKCS#11 library finds tokens again only once no
		// session of the process is open.
		_ = h.km.Close()
		h.km = nil
	}
	return h.openLocked(ctx)
}

// openLocked opens a new session, at most once a second; h.mu is held.
func (h *kmsHandle) openLocked(ctx context.Context) bool {
	if h.closed || time.Since(h.at) < time.Second {
		return false
	}
	h.at = time.Now()
	km, err := h.cfg.open(ctx)
	if err != nil {
		return false
	}
	h.km = km
	h.gen++
	return true
}

func (h *kmsHandle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.km == nil {
		return nil
	}
	err := h.km.Close()
	h.km = nil
	return err
}

// keySigner is a CA key in a KMS. Its public key is read once; signatures
// go through the token.
type keySigner struct {
	h   *kmsHandle
	key string
	pub crypto.PublicKey

	mu  sync.Mutex
	s   crypto.Signer
	gen int
}

func newKeySigner(h *kmsHandle, key string) (*keySigner, error) {
	s, gen, err := h.signer(key)
	if err != nil {
		return nil, err
	}
	return &keySigner{h: h, key: key, pub: s.Public(), s: s, gen: gen}, nil
}

func (k *keySigner) Public() crypto.PublicKey { return k.pub }

func (k *keySigner) current() (crypto.Signer, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.s, k.gen
}

// Sign signs through the token; a failure reopens the session once.
func (k *keySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s, gen := k.current()
	sig, err := s.Sign(r, digest, opts)
	if err == nil {
		return sig, nil
	}
	if !k.h.reopen(context.Background(), gen) {
		return nil, pki.Wrap(pki.Unavailable, err, "the CA key in the KMS cannot sign")
	}
	ns, ngen, rerr := k.h.signer(k.key)
	if rerr != nil {
		return nil, pki.Wrap(pki.Unavailable, err, "the CA key in the KMS cannot sign")
	}
	k.mu.Lock()
	k.s, k.gen = ns, ngen
	k.mu.Unlock()
	sig, err = ns.Sign(r, digest, opts)
	if err != nil {
		return nil, pki.Wrap(pki.Unavailable, err, "the CA key in the KMS cannot sign")
	}
	return sig, nil
}

// readKMSRecord reads dir/kms.json; os.ErrNotExist when the keys are files.
func readKMSRecord(dir string) (kmsRecord, error) {
	var rec kmsRecord
	b, err := os.ReadFile(filepath.Join(dir, kmsFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.KMS == "" || rec.Issuing == "" {
		return rec, fmt.Errorf("%s: not a KMS record: %v", filepath.Join(dir, kmsFile), err)
	}
	return rec, nil
}

// loadKMSSigners opens the KMS of rec (with the PIN of the environment
// when its URI has no pin-source) and the issuing key's signer.
func loadKMSSigners(ctx context.Context, rec kmsRecord, pin string) (*kmsHandle, *keySigner, error) {
	h, err := openKMSHandle(ctx, KMS{URI: rec.KMS, PIN: pin})
	if err != nil {
		return nil, nil, err
	}
	s, err := newKeySigner(h, rec.Issuing)
	if err != nil {
		_ = h.Close()
		return nil, nil, err
	}
	return h, s, nil
}
