package crl

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/fleetpki/fleetpki/pki"
)

// The CRL is encoded here rather than by x509.CreateRevocationList, which
// builds every entry as a Go value and then as an ASN.1 tree: for a million
// entries that is seconds and over a gigabyte. This writes the DER of each
// entry straight into one buffer as the rows arrive. x509.ParseRevocationList
// and openssl check the result in the tests.

var (
	oidAKI       = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidReason    = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidDeltaCRL  = asn1.ObjectIdentifier{2, 5, 29, 27}
)

// sigAlg returns the signature algorithm for the issuer's key: the ones
// fleetpki's CA keys use (ECDSA P-256/P-384, RSA).
func sigAlg(pub crypto.PublicKey) (asn1.ObjectIdentifier, bool, crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, false, crypto.SHA256, nil
		case elliptic.P384():
			return asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, false, crypto.SHA384, nil
		}
	case *rsa.PublicKey:
		return asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, true, crypto.SHA256, nil
	}
	return nil, false, 0, errors.New("crl: unsupported issuer key type")
}

// entry is one revoked certificate as the CRL lists it.
type entry struct {
	serial pki.Serial
	at     time.Time
	reason pki.RevocationReason
}

// addTime writes UTCTime until 2049 and GeneralizedTime after, as RFC 5280 asks.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

// encodeCRL signs a v2 CRL; with deltaBase > 0 a delta CRL on the complete
// CRL of that number. next yields the entries, one per call, until ok is false.
func encodeCRL(issuer *x509.Certificate, signer crypto.Signer, number, deltaBase int64, thisUpdate, nextUpdate time.Time,
	idp pkix.Extension, next func() (entry, bool, error)) ([]byte, error) {
	oid, withNull, hash, err := sigAlg(signer.Public())
	if err != nil {
		return nil, err
	}
	algo := func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			if withNull {
				b.AddASN1NULL()
			}
		})
	}
	var iterErr error
	serial := new(big.Int)
	tbs := cryptobyte.NewBuilder(make([]byte, 0, 1<<16))
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		algo(b)
		b.AddBytes(issuer.RawSubject)
		addTime(b, thisUpdate)
		addTime(b, nextUpdate)
		first, ok, err := next()
		if err != nil {
			iterErr = err
			return
		}
		if ok {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for e := first; ok; e, ok, err = next() {
					if _, good := serial.SetString(string(e.serial), 16); !good {
						iterErr = fmt.Errorf("crl: bad serial %q", e.serial)
						return
					}
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1BigInt(serial)
						addTime(b, e.at)
						if e.reason != pki.ReasonUnspecified {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddASN1ObjectIdentifier(oidReason)
									b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
										b.AddASN1Enum(int64(e.reason))
									})
								})
							})
						}
					})
				}
				if err != nil {
					iterErr = err
				}
			})
		}
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // authorityKeyIdentifier
					b.AddASN1ObjectIdentifier(oidAKI)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(issuer.SubjectKeyId) })
						})
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // cRLNumber
					b.AddASN1ObjectIdentifier(oidCRLNumber)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1Int64(number) })
				})
				if deltaBase > 0 {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // deltaCRLIndicator
						b.AddASN1ObjectIdentifier(oidDeltaCRL)
						b.AddASN1Boolean(true)
						b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1Int64(deltaBase) })
					})
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // issuingDistributionPoint
					b.AddASN1ObjectIdentifier(idp.Id)
					b.AddASN1Boolean(true)
					b.AddASN1OctetString(idp.Value)
				})
			})
		})
	})
	if iterErr != nil {
		return nil, iterErr
	}
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, fmt.Errorf("crl: encode: %w", err)
	}
	h := hash.New()
	h.Write(tbsDER)
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, fmt.Errorf("crl: sign: %w", err)
	}
	out := cryptobyte.NewBuilder(make([]byte, 0, len(tbsDER)+256))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		algo(b)
		b.AddASN1BitString(sig)
	})
	return out.Bytes()
}

// RootEntry is an issuing CA the root revoked.
type RootEntry struct {
	Serial pki.Serial
	At     time.Time
	Reason pki.RevocationReason
}

// SignRootCRL signs the root's CRL (CA certificates only, no distribution
// point named), as `fleetpki root sign` makes it ahead on the offline
// machine and serve does when it holds the root key.
func SignRootCRL(root *x509.Certificate, signer crypto.Signer, number int64, thisUpdate, nextUpdate time.Time, revoked []RootEntry) ([]byte, error) {
	idp, err := issuingDistributionPoint("", true)
	if err != nil {
		return nil, err
	}
	i := 0
	return encodeCRL(root, signer, number, 0, thisUpdate, nextUpdate, idp, func() (entry, bool, error) {
		if i == len(revoked) {
			return entry{}, false, nil
		}
		e := revoked[i]
		i++
		return entry{serial: e.Serial, at: e.At, reason: e.Reason}, true, nil
	})
}
