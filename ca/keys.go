package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.step.sm/crypto/kms"
	kmsapi "go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/pemutil"

	"github.com/fleetpki/fleetpki/pki"
)

// KeyAlgorithm names the key type of the CA hierarchy's keys.
type KeyAlgorithm string

// The CA key algorithms fleetpki creates.
const (
	// ECDSAP256 is ECDSA on P-256 with SHA-256, the default: small
	// certificates and fast handshakes on constrained devices.
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
	// ECDSAP384 is ECDSA on P-384 with SHA-384.
	ECDSAP384 KeyAlgorithm = "ecdsa-p384"
	// RSA3072 is RSA with a 3072-bit modulus, PKCS#1 v1.5 with SHA-256, for
	// devices whose TLS stacks lack ECDSA.
	RSA3072 KeyAlgorithm = "rsa-3072"
)

// createKeyRequest maps the algorithm onto a KMS key request.
func (a KeyAlgorithm) createKeyRequest() (*kmsapi.CreateKeyRequest, error) {
	switch a {
	case ECDSAP256:
		return &kmsapi.CreateKeyRequest{SignatureAlgorithm: kmsapi.ECDSAWithSHA256}, nil
	case ECDSAP384:
		return &kmsapi.CreateKeyRequest{SignatureAlgorithm: kmsapi.ECDSAWithSHA384}, nil
	case RSA3072:
		return &kmsapi.CreateKeyRequest{SignatureAlgorithm: kmsapi.SHA256WithRSA, Bits: 3072}, nil
	}
	return nil, pki.Errorf(pki.Invalid, "unknown key algorithm %q (want %s, %s or %s)", string(a), ECDSAP256, ECDSAP384, RSA3072)
}

// newKeyManager returns the software KMS. It is the one place that decides
// where CA keys come from, so a pkcs11: KMS can be selected here later.
func newKeyManager(ctx context.Context) (kms.KeyManager, error) {
	km, err := kms.New(ctx, kmsapi.Options{Type: kmsapi.SoftKMS})
	if err != nil {
		return nil, fmt.Errorf("open key manager: %w", err)
	}
	return km, nil
}

// encodeKey serialises a private key as PKCS#8 PEM, encrypted (AES-256-CBC,
// PBKDF2) when password is not empty. An empty password is treated as none:
// encrypting with "" would only pretend to protect the key.
func encodeKey(key crypto.PrivateKey, password []byte) ([]byte, error) {
	opts := []pemutil.Options{pemutil.WithPKCS8(true)}
	if len(password) > 0 {
		opts = append(opts, pemutil.WithPassword(password))
	}
	block, err := pemutil.Serialize(key, opts...)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// isEncryptedKey reports whether a PEM key is password-protected, either as
// PKCS#8 EncryptedPrivateKeyInfo or as a legacy OpenSSL "Proc-Type: 4,ENCRYPTED" block.
func isEncryptedKey(keyPEM []byte) bool {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return false
	}
	return block.Type == "ENCRYPTED PRIVATE KEY" || bytes.Contains([]byte(block.Headers["Proc-Type"]), []byte("ENCRYPTED"))
}

// signerFromPEM turns a PEM private key into a signer through the KMS. A
// missing or wrong password is a pki.Unauthenticated error that says so,
// because "failed to decrypt" deep inside a PEM library is not something an
// operator can act on.
func signerFromPEM(ctx context.Context, keyPEM []byte, password []byte, what string) (crypto.Signer, error) {
	encrypted := isEncryptedKey(keyPEM)
	req := &kmsapi.CreateSignerRequest{SigningKeyPEM: keyPEM}
	if encrypted {
		if len(password) == 0 {
			return nil, pki.Errorf(pki.Unauthenticated, "%s is encrypted: a password is required", what)
		}
		req.Password = password
	}
	km, err := newKeyManager(ctx)
	if err != nil {
		return nil, err
	}
	defer km.Close()
	signer, err := km.CreateSigner(req)
	if err != nil {
		if encrypted {
			return nil, pki.Wrap(pki.Unauthenticated, err, what+" cannot be decrypted: wrong password")
		}
		return nil, pki.Wrap(pki.Invalid, err, what+" is not a valid PEM private key")
	}
	return signer, nil
}

// readKeyFile loads a key file, refusing one that others may read: a CA key
// readable by other users is a compromised CA key.
func readKeyFile(ctx context.Context, path string, password []byte) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, pki.Wrap(pki.NotFound, err, "CA key file "+path+" does not exist")
		}
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, pki.Errorf(pki.Invalid, "CA key file %s has mode %o: it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	return signerFromPEM(ctx, b, password, "CA key file "+path)
}

// privateKeyOf returns the exportable private key behind a software signer,
// to re-encode an imported key under the data directory's password.
func privateKeyOf(s crypto.Signer) (crypto.PrivateKey, error) {
	switch k := s.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("CA key of type %T cannot be stored as a file", s)
}

// keyName describes a public key for messages, e.g. "ecdsa-p256" or "rsa-2048".
func keyName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa-p256"
		case elliptic.P384():
			return "ecdsa-p384"
		}
		return "ecdsa-" + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// checkCAKey refuses CA keys we would not issue with: the same floor as for
// devices (RSA ≥ 2048, P-256/P-384), plus Ed25519, which many device TLS
// stacks cannot verify but which is sound.
func checkCAKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return pki.Errorf(pki.Invalid, "CA key is RSA-%d: 2048 to 8192 bits are accepted", n)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
	case ed25519.PublicKey:
		return nil
	}
	return pki.Errorf(pki.Invalid, "CA key type %s is not supported", keyName(pub))
}
