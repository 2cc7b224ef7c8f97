// Package rootsign makes and publishes what the root CA signs besides the
// issuing CA's certificate: its CRL (the issuing CAs it revoked) and an
// OCSP answer about each issuing CA, for relying parties that check the
// whole chain. With an offline root they are signed ahead, on the offline
// machine (`fleetpki root sign`), into one PEM bundle that serve publishes
// until the earliest nextUpdate in it, and never after; serve warns (logs,
// metrics, the UI) well before. When serve holds the root key it signs the
// OCSP answers itself, daily.
package rootsign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/fleetpki/fleetpki/ca"
	"github.com/fleetpki/fleetpki/crl"
	"github.com/fleetpki/fleetpki/internal/atomicfile"
	"github.com/fleetpki/fleetpki/pki"
)

// PEM block types of a bundle.
const (
	pemCRL  = "X509 CRL"
	pemOCSP = "OCSP RESPONSE"
)

// backdate absorbs clock skew, as for certificates.
const backdate = pki.Backdate

// SignOptions says what the root signs.
type SignOptions struct {
	Root   *x509.Certificate
	Signer crypto.Signer
	// Issuing are the issuing CAs the root vouches for: each gets a good
	// OCSP answer, unless Revoked lists it.
	Issuing []*x509.Certificate
	// Revoked lists issuing CAs the root revoked: in its CRL, and revoked
	// in their OCSP answers.
	Revoked []crl.RootEntry
	// Validity is the life of the CRL and the answers (nextUpdate - thisUpdate).
	Validity time.Duration
	Now      time.Time
}

// Bundle is a parsed, verified set of the root's artefacts.
type Bundle struct {
	// CRL is the root's CRL, DER; nil when the bundle holds none.
	CRL     []byte
	CRLInfo pki.CRL
	// OCSP are the answers about the issuing CAs, DER.
	OCSP [][]byte
	// ThisUpdate and NextUpdate span the whole bundle: the latest
	// thisUpdate and the earliest nextUpdate of its parts.
	ThisUpdate, NextUpdate time.Time
}

// Sign signs the root's CRL and an OCSP answer about each issuing CA (for
// SHA-1 and SHA-256 CertIDs: OpenSSL asks with SHA-1) and returns them as a
// PEM bundle.
func Sign(o SignOptions) ([]byte, error) {
	switch {
	case o.Root == nil || o.Signer == nil:
		return nil, errors.New("rootsign: the root certificate and its key are required")
	case o.Validity < time.Hour || o.Validity > 365*24*time.Hour:
		// The CA/B Forum's bound on a CA CRL's life is 12 months.
		return nil, pki.Errorf(pki.Invalid, "the validity must be from an hour to 365 days (got %v)", o.Validity)
	case !o.Root.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(o.Signer.Public()):
		return nil, pki.Errorf(pki.Invalid, "the key is not the root certificate's")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	this, next := o.Now.UTC().Add(-backdate).Truncate(time.Second), o.Now.UTC().Add(o.Validity).Truncate(time.Second)
	if next.After(o.Root.NotAfter) {
		next = o.Root.NotAfter
	}
	// A CRL number must grow from one signing to the next; seconds since
	// the epoch do, across machines, as long as clocks do.
	der, err := crl.SignRootCRL(o.Root, o.Signer, o.Now.Unix(), this, next, o.Revoked)
	if err != nil {
		return nil, fmt.Errorf("rootsign: CRL: %w", err)
	}
	var out bytes.Buffer
	_ = pem.Encode(&out, &pem.Block{Type: pemCRL, Bytes: der})
	answers, err := SignOCSP(o.Root, o.Signer, o.Issuing, o.Revoked, this, next)
	if err != nil {
		return nil, err
	}
	for _, a := range answers {
		_ = pem.Encode(&out, &pem.Block{Type: pemOCSP, Bytes: a})
	}
	return out.Bytes(), nil
}

// SignOCSP signs the root's answers about the issuing CAs, signed by the
// root itself (no delegated responder: nothing else would need its key).
func SignOCSP(root *x509.Certificate, signer crypto.Signer, issuing []*x509.Certificate, revoked []crl.RootEntry, this, next time.Time) ([][]byte, error) {
	var out [][]byte
	for _, ic := range issuing {
		if err := ic.CheckSignatureFrom(root); err != nil {
			return nil, pki.Errorf(pki.Invalid, "issuing CA %q is not signed by the root: %v", ic.Subject, err)
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: ic.SerialNumber, ThisUpdate: this, NextUpdate: next}
		if i := slices.IndexFunc(revoked, func(e crl.RootEntry) bool { return e.Serial == pki.NewSerial(ic.SerialNumber) }); i >= 0 {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, revoked[i].At, int(revoked[i].Reason)
		}
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			tmpl.IssuerHash = h
			der, err := ocsp.CreateResponse(root, root, tmpl, signer)
			if err != nil {
				return nil, fmt.Errorf("rootsign: OCSP answer for %q: %w", ic.Subject, err)
			}
			out = append(out, der)
		}
	}
	return out, nil
}

// Parse reads a bundle and checks every part against root: the CRL's and
// each answer's signature, and that each answer is about a certificate
// the root issued. A bundle with nothing in it is an error.
func Parse(b []byte, root *x509.Certificate) (*Bundle, error) {
	bun := &Bundle{}
	span := func(this, next time.Time) {
		if this.After(bun.ThisUpdate) {
			bun.ThisUpdate = this
		}
		if bun.NextUpdate.IsZero() || next.Before(bun.NextUpdate) {
			bun.NextUpdate = next
		}
	}
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		switch blk.Type {
		case pemCRL:
			if bun.CRL != nil {
				return nil, errors.New("rootsign: the bundle holds two CRLs")
			}
			c, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("rootsign: CRL: %w", err)
			}
			if err := c.CheckSignatureFrom(root); err != nil {
				return nil, fmt.Errorf("rootsign: the CRL is not the root's: %w", err)
			}
			bun.CRL = blk.Bytes
			bun.CRLInfo = pki.CRL{DER: blk.Bytes, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate}
			if c.Number != nil && c.Number.IsInt64() {
				bun.CRLInfo.Number = c.Number.Int64()
			}
			span(c.ThisUpdate, c.NextUpdate)
		case pemOCSP:
			r, err := ocsp.ParseResponse(blk.Bytes, root)
			if err != nil {
				return nil, fmt.Errorf("rootsign: OCSP answer: %w", err)
			}
			if r.NextUpdate.IsZero() {
				return nil, errors.New("rootsign: an OCSP answer without nextUpdate")
			}
			bun.OCSP = append(bun.OCSP, blk.Bytes)
			span(r.ThisUpdate, r.NextUpdate)
		default:
			return nil, fmt.Errorf("rootsign: unexpected PEM block %q in the bundle", blk.Type)
		}
	}
	if bun.CRL == nil && len(bun.OCSP) == 0 {
		return nil, errors.New("rootsign: the bundle is empty")
	}
	return bun, nil
}

// SignOffline is `fleetpki root sign`: it loads the offline root directory
// (ca.LoadOfflineRoot's layout), signs for validity from now, writes the
// bundle to out atomically, and returns how many issuing CAs it vouched for
// and until when.
func SignOffline(ctx context.Context, dir string, password []byte, validity time.Duration, out string) (int, time.Time, error) {
	o, err := ca.LoadOfflineRoot(ctx, dir, password)
	if err != nil {
		return 0, time.Time{}, err
	}
	now := time.Now()
	b, err := Sign(SignOptions{Root: o.Root, Signer: o.Signer, Issuing: o.Issuing, Validity: validity, Now: now})
	if err != nil {
		return 0, time.Time{}, err
	}
	if err := atomicfile.Write(out, b, 0o644); err != nil {
		return 0, time.Time{}, err
	}
	return len(o.Issuing), now.Add(validity), nil
}
